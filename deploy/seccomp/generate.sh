#!/usr/bin/env bash
# Generate ringmesh-proxy.json: the default seccomp profile of podman /
# CRI-O (containers-common's /usr/share/containers/seccomp.json) plus the
# three io_uring system calls, so the proxy can run its io_uring driver in a
# container instead of falling back to epoll.
#
# Usage: deploy/seccomp/generate.sh [SOURCE_PROFILE]   (writes ringmesh-proxy.json beside this script)
#
# The default profiles leave io_uring out on purpose: operations submitted
# through a ring are not seen by seccomp, so a profile that allows io_uring
# cannot forbid what a ring can do (open, connect, ...). That is acceptable
# for the proxy, which needs nothing the default profile forbids; grant this
# profile to the proxy container only, never to the application's.
#
# Regenerate after upgrading containers-common (podman) and commit the
# result; the source package and version are recorded in the added rule's
# comment.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=${1:-/usr/share/containers/seccomp.json}
[ -r "$src" ] || {
    echo "generate: $src not found: install podman (apt-get install -y podman, which brings containers-common) or pass a profile" >&2
    exit 1
}
origin=$(dpkg-query -S "$src" 2>/dev/null | cut -d: -f1 || true)
if [ -n "$origin" ]; then
    origin="$origin $(dpkg-query -W -f '${Version}' "$origin" 2>/dev/null || true)"
else
    origin=$src
fi

python3 - "$src" "$here/ringmesh-proxy.json" "$origin" <<'PY'
import json
import sys

src, dst, origin = sys.argv[1:4]
URING = ["io_uring_enter", "io_uring_register", "io_uring_setup"]

with open(src) as f:
    profile = json.load(f)

if profile.get("defaultAction") == "SCMP_ACT_ALLOW":
    sys.exit(f"generate: {src} allows everything by default; nothing to add")

# A newer default may name io_uring in an explicit deny rule: take it out
# there (and drop a rule left with no names), so only our allow applies.
rules = []
for rule in profile.get("syscalls", []):
    if rule.get("action") != "SCMP_ACT_ALLOW":
        names = [n for n in rule.get("names", []) if n not in URING]
        if not names:
            continue
        rule = dict(rule, names=names)
    rules.append(rule)

already = {n for r in rules if r.get("action") == "SCMP_ACT_ALLOW"
           and not r.get("args") and not r.get("includes") and not r.get("excludes")
           for n in r.get("names", [])}
missing = [n for n in URING if n not in already]
if missing:
    rules.append({
        "names": missing,
        "action": "SCMP_ACT_ALLOW",
        "args": [],
        "comment": "ringmesh-proxy: io_uring driver (added by deploy/seccomp/generate.sh to the default profile of " + origin + ")",
        "includes": {},
        "excludes": {},
    })
profile["syscalls"] = rules

with open(dst, "w") as f:
    json.dump(profile, f, indent="\t")
    f.write("\n")
print(f"wrote {dst}: {src} ({origin}) + {', '.join(missing) or 'nothing (already allowed)'}")
PY
