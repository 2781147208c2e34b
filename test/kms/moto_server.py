# Starts moto's KMS emulator (`python -m moto.server`) for the test:kms tier,
# with two test-only changes, both applied before moto creates any key:
#
# 1. Key ids and key material are derived from COFFER_MOTO_KEY_SEED and a
#    per-process counter instead of random bytes. moto keeps everything in
#    memory, so a restarted emulator would otherwise have lost every key; with
#    this, the harness creates "the same" key again after a restart (same id,
#    same ARN, same material) and ciphertexts wrapped before the outage decrypt
#    afterwards, as they would on a real KMS, whose keys outlive any outage.
# 2. A watchdog ends this process when its parent (the test worker) is gone,
#    so an interrupted test run never leaves an emulator behind.
#
# Usage: python moto_server.py -H 127.0.0.1 -p PORT   (same flags as moto_server)
import hashlib
import os
import sys
import threading
import time
import uuid

import moto.kms.models as kms_models
from moto.server import main

SEED = os.environ.get("COFFER_MOTO_KEY_SEED", "")
if not SEED:
    sys.exit("COFFER_MOTO_KEY_SEED is required")

_counters = {"id": 0, "material": 0}
_lock = threading.Lock()


def _derive(kind: str) -> bytes:
    with _lock:
        _counters[kind] += 1
        n = _counters[kind]
    return hashlib.sha256(f"{SEED}/{kind}/{n}".encode()).digest()


def _key_id(multi_region: bool = False) -> str:
    key = str(uuid.UUID(bytes=_derive("id")[:16], version=4))
    return "mrk-" + key if multi_region else key


def _master_key() -> bytes:
    return _derive("material")  # 32 bytes, as moto's own generate_master_key


kms_models.generate_key_id = _key_id
kms_models.generate_master_key = _master_key


def _watch_parent() -> None:
    parent = int(os.environ.get("COFFER_MOTO_PARENT_PID", "0") or "0")
    if parent <= 0:
        return
    while True:
        time.sleep(1)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass


threading.Thread(target=_watch_parent, daemon=True).start()

if __name__ == "__main__":
    main(sys.argv[1:])
