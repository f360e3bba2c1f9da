#include "portico/pg/listener.h"

#include <libpq-fe.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "connection.h"

namespace portico::pg {
namespace {

bool IsPlainIdentifier(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return !(s.front() >= '0' && s.front() <= '9');
}

}  // namespace

Result<std::unique_ptr<Listener>> Listener::Open(const std::string& url,
                                                 const std::vector<std::string>& channels,
                                                 std::chrono::milliseconds connect_timeout) {
  for (const auto& c : channels) {
    if (!IsPlainIdentifier(c)) return Error::InvalidArgument("bad channel name " + c);
  }
  std::string detail;
  auto conn = Connection::Open(url, Clock::now() + connect_timeout, connect_timeout, &detail);
  if (!conn.ok()) return Error::Unavailable("database unavailable: " + detail);
  for (const auto& c : channels) {
    // The names were checked above: LISTEN takes no parameters.
    auto st = (*conn)->ExecScript("LISTEN " + c, Clock::now() + connect_timeout);
    if (!st.ok()) return std::move(st).error();
  }
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return Error::Unavailable("eventfd failed");
  return std::unique_ptr<Listener>(new Listener(std::move(conn).value(), fd));
}

Listener::Listener(std::unique_ptr<Connection> conn, int wake_fd)
    : conn_(std::move(conn)), wake_fd_(wake_fd) {}

Listener::~Listener() { ::close(wake_fd_); }

void Listener::Interrupt() {
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

Result<std::vector<Notification>> Listener::Wait(std::chrono::milliseconds timeout) {
  PGconn* pg = conn_->native();
  std::vector<Notification> out;
  auto drain = [&]() -> bool {
    if (PQconsumeInput(pg) == 0) return false;
    while (PGnotify* n = PQnotifies(pg)) {
      out.push_back({n->relname, n->extra});
      PQfreemem(n);
    }
    return true;
  };
  // Anything already buffered first (libpq may have read it with a result).
  if (!drain()) return Error::Unavailable("database connection lost");
  if (!out.empty()) return out;
  pollfd fds[2] = {{PQsocket(pg), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  const int rc = ::poll(fds, 2, static_cast<int>(timeout.count()));
  if (rc < 0 && errno != EINTR) return Error::Unavailable("poll failed");
  if (rc > 0 && (fds[1].revents & POLLIN)) {
    std::uint64_t v;
    [[maybe_unused]] auto n = ::read(wake_fd_, &v, sizeof v);
  }
  if (rc > 0 && (fds[0].revents & (POLLIN | POLLERR | POLLHUP))) {
    if (!drain() || PQstatus(pg) != CONNECTION_OK) {
      return Error::Unavailable("database connection lost");
    }
  }
  return out;
}

}  // namespace portico::pg
