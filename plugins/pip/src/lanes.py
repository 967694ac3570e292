# Runs the pip installs of several environments side by side, in one step.
# argv[1] is JSON: {"keep_going": bool, "lanes": [[command, ...], ...]},
# each command {"label": str, "argv": [str], "env": {str: str}}. A lane's
# commands run one after another (an environment is never written by two
# pips at once); the lanes run at once. Each command's output is held and printed whole
# when every lane is done: successful commands first, failed ones last, so
# the end of stderr, which caulk keeps, holds the failures. Exits with the
# first failed command's status (lane order), else 0. A failed command
# ends its own lane unless keep_going (the plan's steps tolerate failure).
# Python 3.5 and later: no f-strings.
import json
import os
import subprocess
import sys
import threading

spec = json.loads(sys.argv[1])
lanes = spec["lanes"]
done = []  # (lane, position, label, code, stdout, stderr)
lock = threading.Lock()


def run(lane_no, lane):
    for position, command in enumerate(lane):
        env = dict(os.environ)
        env.update(command["env"])
        try:
            child = subprocess.Popen(command["argv"], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = child.communicate()
            code = child.returncode
        except OSError as e:
            out, err, code = b"", ("cannot run {}: {}\n".format(command["argv"][0], e)).encode(), 127
        with lock:
            done.append((lane_no, position, command["label"], code, out, err))
        if code != 0 and not spec["keep_going"]:
            return


threads = [threading.Thread(target=run, args=(i, lane)) for i, lane in enumerate(lanes)]
for t in threads:
    t.start()
for t in threads:
    t.join()

done.sort(key=lambda d: (d[3] != 0, d[0], d[1]))
status = 0
for lane_no, position, label, code, out, err in done:
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    sys.stderr.buffer.write(err)
    if code != 0:
        sys.stderr.buffer.write("caulk: `{}` exited {}\n".format(label, code).encode())
    sys.stderr.buffer.flush()
failed = sorted((d for d in done if d[3] != 0), key=lambda d: (d[0], d[1]))
if failed:
    code = failed[0][3]
    # A signal's negative status, or one out of range, still fails.
    status = code if 0 < code < 256 else 1
sys.exit(status)
