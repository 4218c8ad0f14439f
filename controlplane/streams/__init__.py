"""The platform's event stream on NATS JetStream, from the control plane's side: audit ingestion as a
consumer group (`controlplane audit ingest`), dead letters and their replay. The wire contract (stream
and subject names, the event's JSON) is the platform's outbox message, read here without importing the
platform."""
