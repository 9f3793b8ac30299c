"""Rewrites a TorchScript archive the way a hostile or damaged file would look, with every CRC-32
recomputed so that only saelab's own checks can catch it (the hardening tests use it).

usage: rewrite_torch_archive.py IN OUT shorten-storage | break-code | same
  shorten-storage  the largest data/<key> record cut to half its bytes
  break-code       a syntax error put into the first code/*.py record with a forward method
  same             every record as it was (the archive rewritten by zipfile only)
"""
import sys
import zipfile


def main():
    src, dst, action = sys.argv[1], sys.argv[2], sys.argv[3]
    with zipfile.ZipFile(src) as z:
        infos = z.infolist()
        data = {i.filename: z.read(i.filename) for i in infos}
    if action == "shorten-storage":
        storages = [n for n in data if n.split("/")[-2:-1] == ["data"]]
        target = max(storages, key=lambda n: len(data[n]))
        data[target] = data[target][: len(data[target]) // 2]
        print(target.split("/", 1)[1])
    elif action == "break-code":
        code = sorted(n for n in data if "/code/" in n and n.endswith(".py") and b"def forward(" in data[n])
        target = code[0]
        data[target] = data[target].replace(b"def forward(", b"def forward(((", 1)
        print(target.split("/", 1)[1])
    elif action == "same":
        print("unchanged")
    else:
        raise SystemExit("unknown action " + action)
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as z:
        for i in infos:
            z.writestr(i.filename, data[i.filename])


if __name__ == "__main__":
    main()
