#!/usr/bin/env python3
"""check_layers.py: the include rules between weft's layers (docs/ARCHITECTURE.md, "Layers").

    tools/check_layers.py [--root DIR]

  public   A public header (include/weft/**) includes only weft's own public
           headers ("weft/..." or <weft/...>, and the file must exist under
           include/), the C++ standard library and Boost. Anything else (a
           POSIX or Linux header, runtime/, netpoll/) would leak into every
           program that includes weft.
  runtime  A file under runtime/ includes, of weft's own headers, only
           runtime/ and public (weft/...) ones: never netpoll/ or hooks/.
           What the runtime needs from the netpoller is declared in
           runtime/netpoll_contract.hpp and implemented in netpoll/.
  netpoll  A file under netpoll/ never includes hooks/.
  hooks    A file under hooks/ includes, of the layers below the public
           API, only netpoll/fd_hooks.hpp.

Prints one line per violation ("path:line: rule: the include") and exits 1
if there is any, else prints a summary and exits 0.
"""

import argparse
import os
import re
import sys

# The C++ standard library's headers (C++23), the C library's under their
# <cxxx> names, and the C compatibility headers C++ keeps.
STANDARD = set("""
algorithm any array atomic barrier bit bitset charconv chrono codecvt compare complex concepts
condition_variable coroutine deque exception execution expected filesystem flat_map flat_set
format forward_list fstream functional future generator initializer_list iomanip ios iosfwd
iostream istream iterator latch limits list locale map mdspan memory memory_resource mutex new
numbers numeric optional ostream print queue random ranges ratio regex scoped_allocator
semaphore set shared_mutex source_location span spanstream sstream stack stacktrace stdexcept
stdfloat stop_token streambuf string string_view strstream syncstream system_error thread tuple
type_traits typeindex typeinfo unordered_map unordered_set utility valarray variant vector
version
cassert cctype cerrno cfenv cfloat cinttypes climits clocale cmath csetjmp csignal cstdarg
cstddef cstdint cstdio cstdlib cstring ctime cuchar cwchar cwctype
""".split())

# weft's source folders, as the first component of an include's name.
SOURCE_DIRS = {"weft", "runtime", "netpoll", "hooks", "tests", "perf", "examples", "tools"}

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def includes(path):
    """(line number, delimiter, name) of each #include in the file."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if m:
                yield n, m.group(1), m.group(2)


def files_under(root, sub, exts):
    for d, _, names in os.walk(os.path.join(root, sub)):
        for name in sorted(names):
            if name.endswith(exts):
                yield os.path.join(d, name)


def check_public(root):
    bad, seen = [], 0
    for path in files_under(root, os.path.join("include", "weft"), (".hpp", ".h")):
        seen += 1
        for n, _, name in includes(path):
            if name.startswith("weft/"):
                ok = os.path.isfile(os.path.join(root, "include", name))
            else:
                ok = name in STANDARD or name.startswith("boost/")
            if not ok:
                bad.append("%s:%d: public: includes %s (a public header may include only "
                           "weft/..., the standard library and Boost)"
                           % (os.path.relpath(path, root), n, name))
    return bad, seen


def check_tree(root, sub, allowed, why):
    """Each #include of a file under `sub` whose name starts with one of
    weft's source folders must satisfy allowed(name); a quoted include
    outside those folders is also refused (weft's own headers are named
    by folder)."""
    bad, seen = [], 0
    for path in files_under(root, sub, (".hpp", ".cpp", ".h")):
        seen += 1
        for n, delim, name in includes(path):
            top = name.split("/", 1)[0] if "/" in name else ""
            if top in SOURCE_DIRS or delim == '"':
                if not allowed(name):
                    bad.append("%s:%d: %s: includes %s (%s)"
                               % (os.path.relpath(path, root), n, sub, name, why))
    return bad, seen


def check_runtime(root):
    return check_tree(root, "runtime",
                      lambda name: name.startswith(("runtime/", "weft/")),
                      "runtime/ includes only runtime/ and weft/ headers; what it needs "
                      "from the netpoller is runtime/netpoll_contract.hpp")


def check_netpoll(root):
    return check_tree(root, "netpoll",
                      lambda name: name.startswith(("netpoll/", "runtime/", "weft/")),
                      "netpoll/ includes only netpoll/, runtime/ and weft/ headers")


def check_hooks(root):
    return check_tree(root, "hooks",
                      lambda name: name.startswith(("hooks/", "weft/"))
                      or name == "netpoll/fd_hooks.hpp",
                      "hooks/ reaches the runtime only through netpoll/fd_hooks.hpp")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    help="the repository (default: this script's)")
    args = ap.parse_args()
    checks = [("public headers", check_public), ("runtime/ files", check_runtime),
              ("netpoll/ files", check_netpoll), ("hooks/ files", check_hooks)]
    failures = []
    summary = []
    for what, check in checks:
        bad, seen = check(args.root)
        if seen == 0:
            failures.append("%s: none found under %s" % (what, args.root))
        failures += bad
        summary.append("%d %s" % (seen, what))
    for line in failures:
        print(line)
    if failures:
        print("layers: %d violation(s)" % len(failures))
        return 1
    print("layers: ok (%s)" % ", ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
