-- RFC 7396 JSON merge patch of an item's data (PATCH), done here so that the
-- result is computed on jsonb: numbers keep every digit (jsonb stores them
-- as numeric), strings every code point. A null in the patch removes the
-- member, an object merges recursively, anything else replaces.
CREATE FUNCTION portico_merge_patch(target jsonb, patch jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  merged jsonb;
  k text;
  v jsonb;
BEGIN
  IF patch IS NULL OR jsonb_typeof(patch) <> 'object' THEN
    RETURN patch;
  END IF;
  IF target IS NULL OR jsonb_typeof(target) <> 'object' THEN
    merged := '{}'::jsonb;
  ELSE
    merged := target;
  END IF;
  FOR k, v IN SELECT key, value FROM jsonb_each(patch) LOOP
    IF jsonb_typeof(v) = 'null' THEN
      merged := merged - k;
    ELSE
      merged := merged || jsonb_build_object(k, portico_merge_patch(merged -> k, v));
    END IF;
  END LOOP;
  RETURN merged;
END
$$;
