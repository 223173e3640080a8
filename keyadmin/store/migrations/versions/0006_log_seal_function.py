"""PostgreSQL: the seal runs in the server, in one call; a refused step-up write raises.

Revision ID: 0006
Revises: 0005

``ka_audit_row_hash`` is the row hash of store/audit.py (``row_hash_text``) written in SQL:
SHA-256 of the previous hash, a newline and the row's canonical JSON (keys sorted, no spaces,
strings escaped as ``json.dumps(..., ensure_ascii=False)`` escapes them, which is what
PostgreSQL's ``to_json(text)`` does; the time as naive UTC with microseconds).
tests/integration/test_log_seal_sql.py compares the two on generated rows, and every step-up
that seals its own row compares the server's hash with the one Python computes.

``ka_audit_seal`` is ``audit.seal`` for PostgreSQL: under the head row's lock it chains the
rows after the head in seq order, fills a seq whose writer rolled back with a ``log.skipped``
row, stops before a seq whose writer still holds its advisory lock, and moves the head; each
statement in it reads the rows committed before it (a VOLATILE function takes a new
snapshot per statement), so a row committed while the head's lock was awaited is seen. A
step-up makes it one round trip: its write, COMMIT and this call are sent together.

``ka_refuse`` raises (SQLSTATE KA409): the step-up write statement calls it when a guard did
not hold, so the transaction it is in can never commit half a step-up.

Whoever can write the database can replace these functions; what keyadmin then detects is
unchanged: ``log verify`` recomputes every hash in Python, and a step-up whose write was not
refused although its guard did not hold fails closed (docs/security-model.md).
"""

from alembic import op

revision = "0006"
down_revision = "0005"

_ROW_HASH = r"""
CREATE FUNCTION ka_audit_row_hash(p_prev text, p_seq integer, p_at timestamptz, p_actor text,
                                  p_action text, p_subject text, p_details text)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT encode(sha256(convert_to(
    p_prev || E'\n' || '{"action":' || to_json(p_action)::text
    || ',"actor":' || to_json(p_actor)::text
    || ',"at":"' || to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
    || '","details":' || to_json(p_details)::text
    || ',"seq":' || p_seq::text
    || ',"subject":' || coalesce(to_json(p_subject)::text, 'null') || '}',
    'UTF8')), 'hex')
$$
"""

_SEAL = r"""
CREATE FUNCTION ka_audit_seal(p_batch integer, p_lazy boolean, p_mine integer,
                              p_lock_class integer, p_skipped_details text,
                              OUT head_seq integer, OUT head_hash text, OUT waiting_on integer,
                              OUT mine_prev text, OUT mine_hash text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  r record;
  start_seq integer;
  sealed_n integer;
  again boolean;
  digest text;
BEGIN
  IF p_lazy THEN
    -- sealing is a pure function of committed rows: a seal lost in a crash is redone
    PERFORM set_config('synchronous_commit', 'off', true);
  END IF;
  SELECT h.seq, h.hash INTO head_seq, head_hash FROM ka_audit_head h WHERE h.id = 1 FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the log has no head row' USING ERRCODE = 'KA001';
  END IF;
  start_seq := head_seq;
  <<passes>>
  LOOP
    sealed_n := 0;
    again := false;
    <<rows>>
    FOR r IN SELECT a.seq, a.at, a.actor, a.action, a.subject, a.details, a.prev_hash, a.hash
             FROM ka_audit a WHERE a.seq > head_seq ORDER BY a.seq LIMIT p_batch LOOP
      IF r.prev_hash <> '' OR r.hash <> '' THEN
        RAISE EXCEPTION 'log row % comes after the log''s head but is sealed already: the head '
          'was moved back (the log was edited); nothing more is written to it', r.seq
          USING ERRCODE = 'KA001';
      END IF;
      WHILE r.seq > head_seq + 1 LOOP  -- a gap before this row
        IF NOT pg_try_advisory_xact_lock_shared(p_lock_class, head_seq + 1) THEN
          waiting_on := head_seq + 1;  -- still being written: never sealed past
          EXIT passes;
        END IF;
        PERFORM 1 FROM ka_audit a WHERE a.seq = head_seq + 1;  -- a new snapshot
        IF FOUND THEN  -- committed since the rows were read: read them again
          again := true;
          EXIT rows;
        END IF;
        digest := ka_audit_row_hash(head_hash, head_seq + 1, r.at, 'keyadmin', 'log.skipped',
                                    NULL, p_skipped_details);
        INSERT INTO ka_audit (seq, at, actor, action, subject, details, prev_hash, hash)
          VALUES (head_seq + 1, r.at, 'keyadmin', 'log.skipped', NULL, p_skipped_details,
                  head_hash, digest);
        head_seq := head_seq + 1;
        head_hash := digest;
      END LOOP;
      digest := ka_audit_row_hash(head_hash, r.seq, r.at, r.actor, r.action, r.subject,
                                  r.details);
      UPDATE ka_audit SET prev_hash = head_hash, hash = digest WHERE seq = r.seq;
      IF r.seq = p_mine THEN
        mine_prev := head_hash;
        mine_hash := digest;
      END IF;
      head_seq := r.seq;
      head_hash := digest;
      sealed_n := sealed_n + 1;
    END LOOP;
    EXIT passes WHEN NOT again AND sealed_n < p_batch;
  END LOOP;
  IF head_seq <> start_seq THEN
    UPDATE ka_audit_head SET seq = head_seq, hash = head_hash WHERE id = 1;
  END IF;
  IF p_mine > 0 AND mine_hash IS NULL AND p_mine <= head_seq THEN
    -- sealed before this call (by another writer): as stored now
    SELECT a.prev_hash, a.hash INTO mine_prev, mine_hash FROM ka_audit a WHERE a.seq = p_mine;
  END IF;
END
$$
"""

_REFUSE = r"""
CREATE FUNCTION ka_refuse(p_reason text) RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  RAISE EXCEPTION '%', p_reason USING ERRCODE = 'KA409';
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_ROW_HASH)
    op.execute(_SEAL)
    op.execute(_REFUSE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ka_refuse(text)")
        op.execute("DROP FUNCTION ka_audit_seal(integer, boolean, integer, integer, text)")
        op.execute(
            "DROP FUNCTION ka_audit_row_hash(text, integer, timestamptz, text, text, text, text)"
        )
