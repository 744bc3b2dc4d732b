"""Where a process's resident pages of one mapped file come from, by symbol group.

    /usr/bin/python3 bench/failover/rss_pages.py PID PATH_SUFFIX [TOP]

Reads /proc/PID/maps and /proc/PID/pagemap (run as root), finds the mappings whose file
ends with PATH_SUFFIX (e.g. `cli/tandem` or `libcrypto.so.3`), and attributes every
resident code page to the symbol that starts before it (`nm -C` of that file), grouped by
namespace prefix (gRPC, protobuf, Abseil, tandem, std, ...). Prints the resident pages per
permission and the KiB of code per group. docs/benchmarks.md ("Memory") uses it on an
agent of a running `tandem up` deployment.
"""
import bisect
import collections
import struct
import subprocess
import sys

GROUPS = ["grpc_core::", "grpc::", "absl::", "google::protobuf::", "tandem::", "std::", "spdlog::", "fmt::",
          "CLI::", "nlohmann::", "boost::", "YAML::", "re2::", "upb", "grpc_", "gpr_", "etcdserverpb::", "mvccpb::",
          "ares_"]


def group(name):
    for pre in GROUPS:
        if name.startswith(pre) or name.startswith("typeinfo for " + pre) or name.startswith("vtable for " + pre):
            return pre
    return "grpc (other)" if "grpc" in name else "other"


def main():
    pid, suffix = int(sys.argv[1]), sys.argv[2]
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
    maps = [line.split() for line in open(f"/proc/{pid}/maps") if line.rstrip().endswith(suffix)]
    if not maps:
        sys.exit(f"no mapping of a file ending in {suffix} in process {pid}")
    path = maps[0][5]
    resident = []  # (file offset, permissions)
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        for m in maps:
            start, end = (int(x, 16) for x in m[0].split("-"))
            for va in range(start, end, 4096):
                pm.seek(va // 4096 * 8)
                if struct.unpack("Q", pm.read(8))[0] >> 63:
                    resident.append((int(m[2], 16) + va - start, m[1]))
    syms = []
    for line in subprocess.run(["nm", "-C", "--defined-only", path], capture_output=True, text=True).stdout.splitlines():
        p = line.split(None, 2)
        if len(p) == 3 and p[1] in "tTwW":
            syms.append((int(p[0], 16), p[2]))
    syms.sort()
    addrs = [a for a, _ in syms]
    loads = []  # (file offset, vaddr, file size) of the LOAD segments
    for line in subprocess.run(["readelf", "-lW", path], capture_output=True, text=True).stdout.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            loads.append((int(f[1], 16), int(f[2], 16), int(f[4], 16)))
    per_perm, per_group = collections.Counter(), collections.Counter()
    for off, perm in resident:
        per_perm[perm] += 1
        if perm != "r-xp":
            continue
        va = next((v + off - fo for fo, v, fs in loads if fo <= off < fo + fs), None)
        i = bisect.bisect_right(addrs, va) - 1 if va is not None else -1
        per_group[group(syms[i][1]) if i >= 0 else "?"] += 1
    print(f"{path}: {len(resident)} resident pages ({len(resident) * 4} KiB)", dict(per_perm))
    for name, pages in per_group.most_common(top):
        print(f"{pages * 4:8} KiB  {name}")


if __name__ == "__main__":
    main()
