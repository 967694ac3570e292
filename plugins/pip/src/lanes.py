# Runs the pip installs of several environments side by side, in one step.
# Arguments: LANE COMMAND, repeated; COMMAND is JSON
# {"label": str, "argv": [str], "env": {str: str}}, the environment added
# to this process's own. A lane's commands run one after another, in the
# order given (environments that could meet share a lane); lanes run at
# once, at most one per CPU. A failed command ends its lane.
#
# Output: a line when a command starts. When all are done, each command's
# output whole: a command that succeeded prints both of its streams on
# stdout, a failed one its stderr on stderr followed by a line naming it,
# so the step's stderr, whose end caulk keeps, holds the failures alone.
# Exits with the first failed command's status (in argument order), else 0.
# Python 3.5 and later: no f-strings.
import json
import os
import subprocess
import sys
import threading


def text(s):
    return s.encode("utf-8", "surrogateescape")


args = sys.argv[1:]
order = []  # lane ids by first appearance
lanes = {}
for i in range(0, len(args) - 1, 2):
    lane = args[i]
    if lane not in lanes:
        order.append(lane)
        lanes[lane] = []
    lanes[lane].append((i // 2, json.loads(args[i + 1])))

lock = threading.Lock()
results = {}  # command number -> (label, code, stdout, stderr)
ended = set()  # lanes that ran to their end or to a recorded failure
pending = list(order)


def say(line):
    with lock:
        sys.stdout.buffer.write(text(line + "\n"))
        sys.stdout.buffer.flush()


def run_lane(lane):
    for number, command in lanes[lane]:
        label = command.get("label", "?")
        say("caulk: started `{}`".format(label))
        try:
            env = dict(os.environ)
            env.update(command["env"])
            child = subprocess.Popen(command["argv"], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = child.communicate()
            code = child.returncode
        except Exception as e:  # a command that cannot start fails its lane
            out, err, code = b"", text("cannot run {}: {}\n".format(command["argv"][0], e)), 127
        with lock:
            results[number] = (label, code, out, err)
        if code != 0:
            break
    with lock:
        ended.add(lane)


def worker():
    while True:
        with lock:
            if not pending:
                return
            lane = pending.pop(0)
        try:
            run_lane(lane)
        except Exception as e:
            say("caulk: lane {} stopped: {}".format(lane, e))


threads = [threading.Thread(target=worker) for _ in range(max(1, min(len(order), os.cpu_count() or 1)))]
for t in threads:
    t.start()
for t in threads:
    t.join()

failed = []
for number in sorted(results):
    label, code, out, err = results[number]
    if code == 0:
        sys.stdout.buffer.write(out + err)
    else:
        failed.append(number)
sys.stdout.buffer.flush()
for number in failed:
    label, code, out, err = results[number]
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    sys.stderr.buffer.write(err)
    sys.stderr.buffer.write(text("caulk: `{}` exited {}\n".format(label, code)))
    sys.stderr.buffer.flush()
status = 0
if failed:
    code = results[failed[0]][1]
    # A signal's negative status, or one out of range, still fails.
    status = code if 0 < code < 256 else 1
elif len(ended) != len(order):
    sys.stderr.buffer.write(text("caulk: a lane stopped before its end\n"))
    status = 1
sys.exit(status)
