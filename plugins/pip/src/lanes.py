# Runs the pip installs of several environments side by side, in one step.
# Arguments: LANE COMMAND, repeated; COMMAND is JSON
# {"label": str, "argv": [str], "env": {str: str}}, the environment added
# to this process's own. A lane's commands run one after another, in the
# order given (environments that could meet share a lane); lanes run at
# once, at most as many as the CPUs this process may use (its affinity and
# its cgroup's quota), and never more than MAX_AT_ONCE.
#
# A failed command ends the step's work: nothing more is started (the step
# fails, so what the other lanes would do is thrown away), and what runs
# is let finish.
#
# Output: a line when a command starts, naming its lane; then each
# command's stdout as it comes, every line led by its lane ("[0] "), so
# lanes running at once can be told apart (a line longer than LINE comes in
# pieces, each led by its lane). A command's stderr is kept until all are
# done: a command that succeeded then prints it on stdout, led by its lane
# (pip's WARNING lines and its report of broken requirements go to stderr
# with status 0), a failed one on stderr as it is, followed by a line naming
# it; the last line of stderr names every failure, first the one whose
# status the script exits with (the first in argument order). Only failures
# reach stderr, whose end caulk keeps.
# Python 3.5 and later: no f-strings.
import json
import os
import subprocess
import sys
import threading

MAX_AT_ONCE = 4
# Bytes of a line printed at once: caulk splits longer lines itself, which
# would leave the rest without its lane.
LINE = 16384


def text(s):
    return s.encode("utf-8", "surrogateescape")


def usable_cpus():
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:  # cgroup v2: "QUOTA PERIOD", or "max PERIOD" without a quota
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, min(cpus, MAX_AT_ONCE))


args = sys.argv[1:]
if len(args) % 2:
    sys.stderr.buffer.write(text("caulk: LANE COMMAND pairs expected, got {} arguments\n".format(len(args))))
    sys.exit(2)
order = []  # lane ids by first appearance
lanes = {}
for i in range(0, len(args), 2):
    lane = args[i]
    if lane not in lanes:
        order.append(lane)
        lanes[lane] = []
    lanes[lane].append((i // 2, json.loads(args[i + 1])))

lock = threading.Lock()
results = {}  # command number -> (label, lane, code, stderr)
lost = []  # why a lane stopped without a result
pending = list(order)
stop = threading.Event()


def say(line):
    with lock:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()


def start(command):
    env = dict(os.environ)
    env.update(command["env"])
    return subprocess.Popen(command["argv"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def led(prefix, data):
    """Each line of data led by prefix, in pieces of at most LINE bytes."""
    out = []
    for line in data.splitlines():
        for at in range(0, max(len(line), 1), LINE):
            out.append(prefix + line[at:at + LINE] + b"\n")
    return b"".join(out)


def finish(child, prefix):
    """Streams the child's stdout; returns its status and its stderr."""
    err = []
    # Read apart from stdout, or a child filling its stderr pipe would
    # wait for a reader that waits for its stdout. A daemon: should this
    # lane fail, it must not keep the script alive.
    reader = threading.Thread(target=lambda: err.append(child.stderr.read()))
    reader.daemon = True
    reader.start()
    try:
        while True:
            piece = child.stdout.readline(LINE)
            if not piece:
                break
            say(prefix + (piece if piece.endswith(b"\n") else piece + b"\n"))
    except BaseException:
        # Nobody reads its output any more: a child left running would
        # block on a full pipe until the step's time limit.
        child.kill()
        child.wait()
        raise
    reader.join()
    return child.wait(), b"".join(err)


def run_lane(lane):
    prefix = text("[{}] ".format(lane))
    for number, command in lanes[lane]:
        if stop.is_set():
            return
        label = command.get("label", "?")
        say(text("caulk: [{}] started `{}`\n".format(lane, label)))
        try:
            child = start(command)
        except Exception as e:  # a command that cannot start fails its lane
            program = (command.get("argv") or ["?"])[0]
            child, err, code = None, text("cannot run {}: {}\n".format(program, e)), 127
        if child is not None:
            code, err = finish(child, prefix)
        with lock:
            results[number] = (label, lane, code, err)
        if code != 0:
            stop.set()
            return


def worker():
    while not stop.is_set():
        with lock:
            if not pending:
                return
            lane = pending.pop(0)
        try:
            run_lane(lane)
        except Exception as e:
            with lock:
                lost.append("caulk: lane {} stopped: {}".format(lane, e))
            stop.set()


threads = [threading.Thread(target=worker) for _ in range(min(len(order), usable_cpus()))]
for t in threads:
    t.start()
for t in threads:
    t.join()

failed = []
for number in sorted(results):
    label, lane, code, err = results[number]
    if code == 0:
        sys.stdout.buffer.write(led(text("[{}] ".format(lane)), err))
    else:
        failed.append(number)
sys.stdout.buffer.flush()
for number in failed:
    label, lane, code, err = results[number]
    sys.stderr.buffer.write(err)
    sys.stderr.buffer.write(text("caulk: `{}` exited {}\n".format(label, code)))
    sys.stderr.buffer.flush()
for why in lost:
    sys.stderr.buffer.write(text(why + "\n"))
status = 0
if failed:
    code = results[failed[0]][2]
    # A signal's negative status, or one out of range, still fails.
    status = code if 0 < code < 256 else 1
    names = ["`{}` ({})".format(results[n][0], results[n][2]) for n in failed]
    sys.stderr.buffer.write(text("caulk: failed: {}\n".format(", ".join(names))))
elif lost or len(results) != len(args) // 2:
    sys.stderr.buffer.write(text("caulk: a lane stopped before its end\n"))
    status = 1
sys.stderr.buffer.flush()
sys.exit(status)
