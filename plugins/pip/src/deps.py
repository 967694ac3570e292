def pip_check():
    # pip's own command, where the rules below would not see what pip sees.
    import subprocess
    run = subprocess.run([sys.executable, "-m", "pip", "check", "--disable-pip-version-check"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if run.returncode not in (0, 1):
        said = run.stderr.decode("utf-8", "replace").strip().splitlines()
        return {"error": "pip check exited %d: %s" % (run.returncode, said[-1] if said else "no output")}
    return {"lines": run.stdout.decode("utf-8", "replace").splitlines()}
def requirements():
    try:
        from importlib import metadata
        from pip._vendor.packaging.requirements import Requirement
        from pip._vendor.packaging.tags import parse_tag, sys_tags
        from pip._vendor.packaging.utils import canonicalize_name
        from pip._vendor.packaging.version import parse
    except Exception:
        return pip_check()
    # pip also reads eggs, egg-links and zips on sys.path (with pkg_resources).
    for entry in sys.path:
        if os.path.isfile(entry):
            return pip_check()
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        if any(n.endswith((".egg", ".egg-link")) for n in names):
            return pip_check()
    dists = {}
    for dist in metadata.distributions():
        try:
            name = dist.metadata.get("Name")
        except (OSError, ValueError):
            continue
        if isinstance(name, str) and name and canonicalize_name(name) not in dists:
            dists[canonicalize_name(name)] = dist
    lines = []
    found = {}
    for key, dist in dists.items():
        try:
            version = parse(dist.version)
            wanted = [Requirement(r) for r in dist.requires or ()]
            wanted = [r for r in wanted if r.marker is None or r.marker.evaluate({"extra": ""})]
        except ValueError as e:
            lines.append("%s %s has requirements that do not parse: %s" % (key, dist.version, e))
            continue
        found[key] = (version, wanted)
    for key, (version, wanted) in found.items():
        for req in wanted:
            dep = canonicalize_name(req.name)
            if dep not in found:
                line = "%s %s requires %s, which is not installed." % (key, version, dep)
            elif not req.specifier.contains(found[dep][0], prereleases=True):
                line = "%s %s has requirement %s, but you have %s %s." % (key, version, req, dep, found[dep][0])
            else:
                continue
            if line not in lines:
                lines.append(line)
    supported = set(sys_tags())
    for key, dist in dists.items():
        tags = set()
        for line in (dist.read_text("WHEEL") or "").splitlines():
            field, _, value = line.partition(":")
            if field.strip().lower() == "tag" and value.strip():
                tags.update(parse_tag(value.strip()))
        if tags and tags.isdisjoint(supported):
            lines.append("%s %s is not supported on this platform" % (key, dist.version))
    return {"lines": lines}
