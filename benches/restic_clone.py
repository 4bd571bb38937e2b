#!/usr/bin/env python3
"""Copies of a restic repository's newest snapshot of one host, each an hour
older than the one before: restic's side of `clone-snapshots`, so that
`restic_scale.py --clone-snapshots N` times both tools with 10,000 snapshots
without 10,000 backups (restic's take about 2 s each at 1 M blobs).

restic has no command that adds a snapshot without a backup, so this writes
snapshot files the way restic does (its design document, "Keys, Encryption
and MAC" and "Snapshots"): the master key from the key file (scrypt of the
password, then AES-256-CTR + Poly1305-AES), each snapshot as uncompressed
JSON sealed with a fresh IV, stored under the SHA-256 of the sealed bytes.
Every file read is authenticated first, so a mistake here fails loudly
instead of writing what restic would refuse; `restic check` reads them all
after.

    python3 benches/restic_clone.py REPO PASSWORD_FILE HOST COUNT
"""
import base64
import hashlib
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305


class Keys:
    """An encryption key (AES-256) and a MAC key (k for AES-128, r for Poly1305)."""

    def __init__(self, encrypt, mac_k, mac_r):
        self.encrypt, self.mac_k, self.mac_r = encrypt, mac_k, mac_r

    def _mac(self, iv, ciphertext):
        enc = Cipher(algorithms.AES(self.mac_k), modes.ECB()).encryptor()
        s = enc.update(iv) + enc.finalize()
        return Poly1305.generate_tag(self.mac_r + s, ciphertext)

    def open(self, sealed):
        iv, ciphertext, tag = sealed[:16], sealed[16:-16], sealed[-16:]
        if len(sealed) < 32 or self._mac(iv, ciphertext) != tag:
            raise ValueError("MAC does not match (wrong password or damaged file)")
        dec = Cipher(algorithms.AES(self.encrypt), modes.CTR(iv)).decryptor()
        return dec.update(ciphertext) + dec.finalize()

    def seal(self, plaintext):
        iv = os.urandom(16)
        enc = Cipher(algorithms.AES(self.encrypt), modes.CTR(iv)).encryptor()
        ciphertext = enc.update(plaintext) + enc.finalize()
        return iv + ciphertext + self._mac(iv, ciphertext)


def master_keys(repo, password):
    """The repository's master keys, from the first key file the password opens."""
    for name in sorted(os.listdir(os.path.join(repo, "keys"))):
        with open(os.path.join(repo, "keys", name)) as f:
            kf = json.load(f)
        raw = hashlib.scrypt(password, salt=base64.b64decode(kf["salt"]), n=kf["N"], r=kf["r"], p=kf["p"],
                             maxmem=1 << 30, dklen=64)
        user = Keys(raw[:32], raw[32:48], raw[48:64])
        try:
            master = json.loads(user.open(base64.b64decode(kf["data"])))
        except ValueError:
            continue
        mac = master["mac"]
        return Keys(base64.b64decode(master["encrypt"]), base64.b64decode(mac["k"]), base64.b64decode(mac["r"]))
    sys.exit("restic_clone: the password opens no key of the repository")


def snapshot_json(keys, sealed):
    """A snapshot file's JSON (repository version 2 may compress it)."""
    plain = keys.open(sealed)
    if plain[:1] == b"\x02":
        # A standard zstd frame; the zstd tool is on the machines the
        # benchmarks run on, the Python binding not always.
        plain = subprocess.run(["zstd", "-d", "-c", "-q"], input=plain[1:], stdout=subprocess.PIPE,
                               check=True).stdout
    return json.loads(plain)


def parse_time(t):
    # restic writes RFC 3339 with nanoseconds; Python reads microseconds.
    head, _, rest = t.partition(".")
    frac = "".join(c for c in rest if c.isdigit())
    zone = rest[len(frac):] or "Z"
    return datetime.fromisoformat(f"{head}.{frac[:6] or '0'}{'+00:00' if zone == 'Z' else zone}")


def clone(repo, password, host, count):
    keys = master_keys(repo, password)
    snaps = os.path.join(repo, "snapshots")
    newest = None
    for name in os.listdir(snaps):
        with open(os.path.join(snaps, name), "rb") as f:
            s = snapshot_json(keys, f.read())
        if s.get("hostname") == host and (newest is None or parse_time(s["time"]) > parse_time(newest["time"])):
            newest = s
    if newest is None:
        sys.exit(f"restic_clone: no snapshot of host {host}")
    start = parse_time(newest["time"])
    for i in range(1, count + 1):
        s = dict(newest)
        s["time"] = (start - timedelta(hours=i)).isoformat()
        sealed = keys.seal(json.dumps(s).encode())
        name = hashlib.sha256(sealed).hexdigest()
        tmp = os.path.join(snaps, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(sealed)
        os.rename(tmp, os.path.join(snaps, name))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    repo, pw_file, host, count = sys.argv[1:]
    with open(pw_file, "rb") as f:
        pw = f.read().split(b"\n")[0]
    clone(repo, pw, host, int(count))
