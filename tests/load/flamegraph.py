#!/usr/bin/env python3
# Renders folded stacks ("root;caller;...;leaf count" per line, as
# fold_stacks.py writes them) as a flame graph in SVG: one box per frame,
# as wide as its share of the samples, callers below callees; hover a box
# for its name and share. Written here because Debian 12 packages no flame
# graph tooling (the usual Perl scripts are not in it).
#
#   tests/load/flamegraph.py data.folded "portico-data under S1" > data.svg
import html
import sys
import zlib

WIDTH, ROW, FONT, MIN_PX = 1200, 16, 11, 0.5


def build(lines):
    root = {"name": "all", "count": 0, "children": {}}
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        node = root
        node["count"] += n
        for frame in stack.split(";"):
            node = node["children"].setdefault(frame, {"name": frame, "count": 0, "children": {}})
            node["count"] += n
    return root


def color(name):
    h = zlib.crc32(name.encode())
    if name.startswith("portico::"):
        return f"rgb({60 + h % 60},{150 + h % 80},{60 + h % 50})"  # ours: green
    if "[k]" in name or name.startswith(("__x64", "do_sys", "entry_SYSCALL", "pvm_")):
        return f"rgb({200 + h % 50},{100 + h % 60},{60 + h % 40})"  # kernel: orange
    return f"rgb({210 + h % 40},{70 + h % 90},{50 + h % 40})"


def render(root, title):
    total = root["count"] or 1
    boxes, depth_max = [], [0]

    def walk(node, x, depth):
        w = node["count"] / total * WIDTH
        if w < MIN_PX:
            return
        boxes.append((x, depth, w, node))
        depth_max[0] = max(depth_max[0], depth)
        cx = x
        for child in sorted(node["children"].values(), key=lambda c: c["name"]):
            walk(child, cx, depth + 1)
            cx += child["count"] / total * WIDTH

    walk(root, 0.0, 0)
    height = (depth_max[0] + 1) * ROW + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'font-family="monospace" font-size="{FONT}">',
           f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" font-size="14">'
           f'{html.escape(title)} ({total} samples)</text>']
    for x, depth, w, node in boxes:
        y = height - (depth + 1) * ROW
        share = 100.0 * node["count"] / total
        name = html.escape(node["name"])
        out.append(f'<g><title>{name} ({share:.1f}%)</title>'
                   f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{ROW - 1}" '
                   f'fill="{color(node["name"])}"/>')
        chars = int(w / (FONT * 0.6))
        if chars >= 3:
            label = node["name"] if len(node["name"]) <= chars else node["name"][:chars - 2] + ".."
            out.append(f'<text x="{x + 2:.1f}" y="{y + ROW - 4}">{html.escape(label)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(render(build(f), sys.argv[2] if len(sys.argv) > 2 else sys.argv[1]))
