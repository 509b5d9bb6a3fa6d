-- The outbox message of a stored record version borrows the record's body instead of holding a
-- second copy of the document (each document was written twice per commit: once as
-- `records.body`, once inside its message; see ARCHITECTURE.md, "What a commit writes").
--
-- A borrowing row stores its envelope without the document: `envelope` is the text before the
-- document followed by the text after it, `body_at` is the length of the text before it in
-- characters (what `substr` counts on both backends), and `body_record` the record whose body
-- goes there. `records.body_message` names the message that borrows the body, if any.
-- Readers splice the two (the `outbox_messages` view, and the same expression in the relay's
-- and the embedded bus's queries).
--
-- The invariant "a borrowing row's record still holds the body of that message" is kept by the
-- database: before a record's body changes or the record goes, the borrowing row is given its
-- own copy (the trigger below). Rows written before this migration hold their whole envelope.
ALTER TABLE outbox ADD COLUMN body_record TEXT;
ALTER TABLE outbox ADD COLUMN body_at BIGINT;
ALTER TABLE records ADD COLUMN body_message TEXT;

CREATE FUNCTION records_return_body() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.body_message IS NOT NULL THEN
        UPDATE outbox
           SET envelope = substr(envelope, 1, CAST(body_at AS INTEGER)) || OLD.body
                          || substr(envelope, CAST(body_at AS INTEGER) + 1),
               body_record = NULL,
               body_at = NULL
         WHERE message_id = OLD.body_message AND body_record = OLD.id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER records_body_changes AFTER UPDATE OF body ON records
    FOR EACH ROW EXECUTE FUNCTION records_return_body();
CREATE TRIGGER records_goes AFTER DELETE ON records
    FOR EACH ROW EXECUTE FUNCTION records_return_body();

-- Every outbox message with its whole envelope, for tests and operators' queries.
CREATE VIEW outbox_messages AS
SELECT o.seq, o.message_id, o.message_type, o.routing_key, o.created_at, o.sent_at,
       CASE WHEN o.body_record IS NULL THEN o.envelope
            ELSE substr(o.envelope, 1, CAST(o.body_at AS INTEGER)) || r.body
                 || substr(o.envelope, CAST(o.body_at AS INTEGER) + 1)
       END AS envelope
  FROM outbox o LEFT JOIN records r ON r.id = o.body_record;
