-- The audit log on PostgreSQL: the application writes as a role that can add to the log but never
-- change or remove anything in it. Run as the owner of the schema after the log's tables exist
-- (the first `controlplane audit ...` command creates them), replacing the password.
CREATE ROLE audit_writer LOGIN PASSWORD 'change-this-password';
GRANT USAGE ON SCHEMA public TO audit_writer;
GRANT SELECT, INSERT ON audit_entries, audit_nodes, audit_checkpoints TO audit_writer;
GRANT SELECT ON alembic_version_audit TO audit_writer;
-- Per-subject keys may be deleted: that is how a subject is crypto-shredded.
GRANT SELECT, INSERT, DELETE ON audit_subject_keys TO audit_writer;
-- Owner-only from here on: no UPDATE, DELETE or TRUNCATE on the log, and the triggers that refuse
-- them stay in place because only the owner could disable them.
