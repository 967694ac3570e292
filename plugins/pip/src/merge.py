import base64, csv, errno, hashlib, os, re, shutil, stat, sys
site = os.path.normpath(sys.argv[1])
scratch = os.path.normpath(sys.argv[2])
aside = os.path.normpath(sys.argv[3])
root = os.path.normpath(sys.argv[4])
args = sys.argv[5:]
if root == "/" or not (site == root or site.startswith(root + os.sep)):
    root = site
def norm(n):
    return re.sub(r"[-_.]+", "-", n).lower()
def meta(d):
    n = v = None
    try:
        with open(os.path.join(d, "METADATA"), encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break
                k, _, val = line.partition(":")
                k = k.strip().lower()
                if k == "name" and n is None:
                    n = val.strip()
                elif k == "version" and v is None:
                    v = val.strip()
    except OSError:
        pass
    return n, v
def rows(d):
    try:
        with open(os.path.join(d, "RECORD"), newline="", encoding="utf-8") as f:
            return [r for r in csv.reader(f) if r]
    except OSError:
        return []
def inside(p, d):
    return p == d or p.startswith(d + os.sep)
def home_relative(path):
    return path[6:] if path.startswith("../../") and not path.startswith("../../../") else None
def located(path):
    return os.path.normpath(os.path.join(site, home_relative(path) or path))
def contained(p, base):
    # The nearest existing directory above p, symlinks resolved, lies in base.
    d = os.path.dirname(p)
    while not os.path.lexists(d):
        d = os.path.dirname(d)
    return inside(os.path.realpath(d), os.path.realpath(base))
def launchers():
    # The #! lines pip writes for the interpreter running this script (the
    # one that ran pip): plain, quoted, or /bin/sh re-running a long path.
    exe = os.fsencode(sys.executable)
    out = set()
    for e in (exe, b'"' + exe + b'"'):
        out.add(b"#!" + e + b"\n")
        out.add(b"#!/bin/sh\n'''exec' " + e + b' "$0" "$@"\n' + b"' '''\n")
    return out
def header(data):
    # pip's launcher: a #! line, or /bin/sh running a long interpreter path.
    if not data.startswith(b"#!"):
        return None
    lines = data.split(b"\n")
    if lines[0].strip() == b"#!/bin/sh" and len(lines) > 2 and lines[1].startswith(b"'''exec'"):
        return b"\n".join(lines[:3]) + b"\n"
    return lines[0] + b"\n"
def move(src, dst):
    try:
        os.replace(src, dst)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        shutil.copy2(src, dst, follow_symlinks=False)
        os.unlink(src)
journal = []
def makedirs(d):
    missing = []
    while not os.path.isdir(d):
        missing.append(d)
        d = os.path.dirname(d)
    for m in reversed(missing):
        os.mkdir(m)
        journal.append(("mkdir", m))
class Refused(Exception):
    pass
def take_out(p):
    kept = os.path.join(aside, os.path.relpath(p, "/"))
    makedirs(os.path.dirname(kept))
    move(p, kept)
    journal.append(("aside", p, kept))
def put(src, dst):
    if os.path.lexists(dst):
        if os.path.isdir(dst) and not os.path.islink(dst):
            raise OSError(errno.EISDIR, "a directory is where a file of the new version goes", dst)
        take_out(dst)
    makedirs(os.path.dirname(dst))
    move(src, dst)
    journal.append(("placed", dst))
def undo():
    failed = []
    for entry in reversed(journal):
        try:
            if entry[0] == "aside":
                move(entry[2], entry[1])
            elif entry[0] == "placed":
                os.unlink(entry[1])
            elif entry[0] == "mkdir":
                os.rmdir(entry[1])
            elif entry[0] == "rmdir":
                # Back as it was, not with the umask and the merge's owner.
                st = entry[2]
                os.mkdir(entry[1])
                os.chown(entry[1], st.st_uid, st.st_gid)
                os.chmod(entry[1], stat.S_IMODE(st.st_mode))
        except OSError as e:
            failed.append("%s (%s)" % (entry[1], e.strerror or e))
    return failed
def dist_infos(d):
    if not os.path.isdir(d):
        return []
    return [os.path.join(d, e) for e in sorted(os.listdir(d)) if e.endswith(".dist-info") and os.path.isdir(os.path.join(d, e))]
def digest(path):
    with open(path, "rb") as f:
        data = f.read()
    return ["sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode(), str(len(data))]
def relaunched(src, old_header):
    # A console script of the new version, started by the old one's #! line
    # where pip wrote one naming the interpreter that ran it; True when
    # rewritten.
    with open(src, "rb") as f:
        data = f.read()
    new_header = header(data)
    if old_header is None or new_header is None or new_header == old_header or new_header not in launchers():
        return False
    with open(src, "wb") as f:
        f.write(old_header + data[len(new_header):])
    return True
def first_line(p):
    # Only to keep an old script's #! line: one that cannot be read keeps
    # the new script's own, rather than failing the whole merge.
    if os.path.islink(p):
        return None
    try:
        with open(p, "rb") as f:
            return header(f.read(4096))
    except OSError:
        return None
def skipped(p, base):
    print("caulk: left %s as it is: a symlink on its way leads out of %s" % (p, base))
def replace(old_info, old, new, keep, emptied):
    # Takes the old distribution out and puts the new one in; returns how
    # many of the old files went.
    global at
    old_rows = rows(old)
    had = {}
    outside = {}
    removed = 0
    for r in old_rows:
        p = located(r[0])
        rel = home_relative(r[0])
        if rel is not None:
            # Read before the new version's file of the same name replaces it.
            had[rel] = first_line(p) if os.path.isfile(p) and inside(p, site) and contained(p, site) else None
        if inside(p, old) or p in keep or not (os.path.islink(p) or os.path.isfile(p)):
            continue
        at = p
        if not inside(p, site):
            # Scripts and data under ROOT: what lies beyond it stays.
            if not inside(p, root):
                print("caulk: left %s as it is: it lies outside %s" % (p, root))
                continue
            if not contained(p, root):
                skipped(p, root)
                continue
            outside[os.path.relpath(p, root)] = first_line(p)
        elif not contained(p, site):
            if rel is not None:
                skipped(p, site)
                continue
            # Leaving the old package's code while its new .dist-info goes
            # in would make it look patched.
            raise Refused("a file of %s lies behind a symlink that leads out of %s" % (old_info, site))
        take_out(p)
        removed += 1
        emptied.add(os.path.dirname(p))
    if os.path.islink(old):
        # Taken out as the link it is, never walked into.
        at = old
        take_out(old)
    for d, subdirs, files in ([] if not os.path.lexists(old) else os.walk(old, topdown=False)):
        for name in files:
            at = os.path.join(d, name)
            take_out(at)
        for name in subdirs:
            at = os.path.join(d, name)
            if os.path.islink(at):
                take_out(at)
            else:
                st = os.lstat(at)
                os.rmdir(at)
                journal.append(("rmdir", at, st))
    if os.path.lexists(old):
        at = old
        st = os.lstat(old)
        os.rmdir(old)
        journal.append(("rmdir", old, st))
    kept = []
    changed = False
    new_rows = rows(new)
    for r in new_rows:
        rel = home_relative(r[0])
        src = os.path.normpath(os.path.join(scratch, rel or r[0]))
        if rel is None or rel in had:
            dst, base = os.path.normpath(os.path.join(site, rel or r[0])), site
        elif rel in outside:
            dst, base = os.path.normpath(os.path.join(root, rel)), root
        else:
            changed = True
            continue
        if not (inside(src, scratch) and inside(dst, base) and (os.path.islink(src) or os.path.isfile(src))):
            kept.append(r)
            continue
        at = dst
        if not contained(dst, base):
            if rel is None:
                raise Refused("a file of %s goes behind a symlink that leads out of %s" % (os.path.basename(new), site))
            skipped(dst, base)
            changed = True
            continue
        if base == root and not inside(dst, site):
            if not os.path.islink(src):
                relaunched(src, outside[rel])
                r = [os.path.relpath(dst, site)] + digest(src)
            else:
                r = [os.path.relpath(dst, site)] + r[1:]
            changed = True
        elif base == site and rel is not None and not os.path.islink(src) and relaunched(src, had.get(rel)):
            r = [r[0]] + digest(src)
            changed = True
        put(src, dst)
        kept.append(r)
    placed = os.path.join(site, os.path.basename(new))
    if changed and os.path.isdir(placed):
        at = os.path.join(placed, "RECORD")
        with open(at, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            for r in kept:
                w.writerow(r)
    return removed
at = site
keep_aside = False
try:
    if not args or len(args) % 3:
        sys.exit("caulk: expected SITE SCRATCH ASIDE ROOT followed by OLD_DIST_INFO NAME VERSION triples")
    moves = []
    for path in (scratch, aside):
        if os.path.islink(path):
            sys.exit("caulk: %s is a symlink; refusing to work through it" % path)
    for old_info, name, version in zip(args[0::3], args[1::3], args[2::3]):
        old = os.path.join(site, old_info)
        if os.sep in old_info or not old_info.endswith(".dist-info") or not (os.path.isdir(old) or os.path.islink(old)):
            sys.exit("caulk: %s is not a distribution directory" % old)
        new = None
        for d in dist_infos(scratch):
            n, v = meta(d)
            if n is not None and norm(n) == norm(name) and v == version:
                new = d
        if new is None:
            sys.exit("caulk: %s %s is not installed in %s; leaving %s in place" % (name, version, scratch, old_info))
        moves.append((old_info, old, new))
    replaced = set(old for _, old, _ in moves)
    keep = set()
    for _, _, new in moves:
        keep.update(located(r[0]) for r in rows(new))
    for d in dist_infos(site):
        if d not in replaced:
            keep.update(located(r[0]) for r in rows(d))
    # A leftover of an earlier run goes; then ASIDE is made here, so nothing
    # taken out can land behind a symlink planted there.
    shutil.rmtree(aside, ignore_errors=True)
    try:
        os.mkdir(aside)
    except OSError as e:
        sys.exit("caulk: cannot make %s to keep the old files in: %s" % (aside, e.strerror or e))
    emptied = set()
    done = []
    try:
        for old_info, old, new in moves:
            removed = replace(old_info, old, new, keep, emptied)
            done.append("caulk: removed %s (%d files); %s in place" % (old_info, removed, os.path.basename(new)))
    except Exception as e:
        failed = undo()
        where = at
        why = getattr(e, "strerror", None) or str(e)
        names = ", ".join(m[0] for m in moves)
        if failed:
            keep_aside = True
            sys.exit("caulk: replacing %s in %s failed at %s: %s; putting the old files back failed too at %s, "
                     "so the environment holds parts of both versions"
                     % (names, site, where, why, "; ".join(failed)))
        sys.exit("caulk: replacing %s in %s failed at %s: %s; the old files are back in place and the new versions are not installed"
                 % (names, site, where, why))
    for line in done:
        print(line)
    for d in sorted(emptied, key=len, reverse=True):
        while (inside(d, site) or inside(d, root)) and d not in (site, root):
            try:
                os.rmdir(d)
            except OSError:
                break
            d = os.path.dirname(d)
finally:
    shutil.rmtree(scratch, ignore_errors=True)
    if not keep_aside:
        shutil.rmtree(aside, ignore_errors=True)
