"""A test helper process: append N entries to the audit log at URL, printing each seq once durable."""

import sys

from audit.log import AuditLog
from controlplane.storage import make_engine

url, count, worker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
log = AuditLog(make_engine(url), origin="audit.test/concurrent")
for i in range(count):
    appended = log.append(kind="money", actor=f"worker-{worker}", subject=f"bet:{worker}-{i}", payload={"i": i})
    print(appended.seq, flush=True)  # printed only after the append's transaction committed
