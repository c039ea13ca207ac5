"""A real one-node SLURM cluster on loopback, for tests: munged + slurmctld + slurmd.

    with SlurmCluster(run_dir) as cluster:   # raises SlurmUnavailable when it cannot start
        ...                                  # sbatch/squeue now talk to it

or by hand (as root):  python -m tests.slurm.cluster start|stop  [--run-dir DIR]

What has to be right (measured on Debian 12, slurm-wlm 22.05, see ENVIRONMENT.md):
* slurm.conf lives at the default /etc/slurm/slurm.conf: the jobstep executor inside a job drops
  SLURM_CONF from the environment, so a config anywhere else is not seen by the job's `srun`.
  We only ever write/remove files that carry our MARKER; a foreign slurm.conf (a machine that is
  part of a real cluster) makes the cluster unavailable instead of being overwritten.
* linuxproc process tracking and no task plugin (no cgroups needed), cons_tres with memory as a
  consumable, RealMemory below what slurmd measures (else the node goes INVAL).
* Fake GPUs: GresTypes=gpu, node Gres=gpu:N, gres.conf with one File= per device (/dev/null,
  /dev/zero, ...; a count without File= drains the node). Jobs asking for --gpus=N are then
  scheduled like on a GPU node and see CUDA_VISIBLE_DEVICES.
* No accounting daemon: `sacct` fails. Clients must query job states with squeue, which keeps
  finished jobs for MinJobAge seconds.

All state (spool, state save, logs) lives in run_dir; daemons run in the foreground as children
of this process, so stop() knows exactly what it started. A lock serialises concurrent users on
one machine (the config path is global).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
MARKER = "# Written by mllm-workflow tests/slurm/cluster.py; removed when its cluster stops."
LOCK_FILE = Path("/tmp/mllm-workflow-slurm-test.lock")
# The daemons of the cluster that is up: pid and command line each. A cluster whose owner was
# killed (SIGKILL skips every cleanup) is stopped by the next start, or by `... cluster stop`.
STATE_FILE = Path("/tmp/mllm-workflow-slurm-test.daemons")
FAKE_GPU_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom")
REQUIRED_COMMANDS = ("slurmctld", "slurmd", "munged", "munge", "unmunge", "sbatch", "squeue")


class SlurmUnavailable(RuntimeError):
    """SLURM is not installed here, or the cluster could not be started (the message says why)."""


def missing_commands() -> list[str]:
    search = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return [name for name in REQUIRED_COMMANDS if shutil.which(name, path=search) is None]


def _which(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin")
    if found is None:
        raise SlurmUnavailable(f"{name} is not installed (run .ci/install_slurm.sh)")
    return found


def _run(*command: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def munge_works() -> bool:
    try:
        credential = _run(_which("munge"), "-n", timeout=5)
        if credential.returncode != 0:
            return False
        check = subprocess.run(
            [_which("unmunge")], input=credential.stdout, capture_output=True, text=True, timeout=5
        )
        return check.returncode == 0
    except (subprocess.TimeoutExpired, OSError):
        return False


def slurmctld_answers() -> bool:
    try:
        return _run(_which("scontrol"), "ping", timeout=5).stdout.count("UP") > 0
    except (subprocess.TimeoutExpired, OSError, SlurmUnavailable):
        return False


def node_facts() -> tuple[str, int, int]:
    """(node name, CPUs, usable memory in MB) as slurmd itself measures them."""
    node = socket.gethostname().split(".")[0]
    facts = dict(
        item.split("=", 1) for item in _run(_which("slurmd"), "-C").stdout.split() if "=" in item
    )
    cpus = int(facts.get("CPUs", os.cpu_count() or 1))
    real_memory = int(facts.get("RealMemory", 2048))
    # Below the measured value, or the node is INVAL; leave the OS some room too.
    return node, cpus, max(1024, int(real_memory * 0.9))


class SlurmCluster:
    def __init__(
        self,
        run_dir: Path,
        gpus: int = 1,
        partitions: tuple[str, ...] = ("cpu", "gpu"),
        min_job_age: int = 300,
    ):
        self.run_dir = Path(run_dir).resolve()
        if not 0 < gpus <= len(FAKE_GPU_FILES):
            raise ValueError(f"1 to {len(FAKE_GPU_FILES)} fake GPUs")
        self.gpus = gpus
        self.partitions = partitions  # the first is the default; all hold the one node
        self.min_job_age = min_job_age
        self.node = ""
        self._lock = None
        self._processes: dict[str, subprocess.Popen] = {}
        self._wrote: list[Path] = []

    # -- configuration -----------------------------------------------------------------------

    def slurm_conf(self, node: str, cpus: int, memory_mb: int) -> str:
        partitions = "\n".join(
            f"PartitionName={name} Nodes={node} Default={'YES' if i == 0 else 'NO'} "
            "MaxTime=INFINITE State=UP OverSubscribe=NO"
            for i, name in enumerate(self.partitions)
        )
        spool = self.run_dir / "spool"
        return f"""{MARKER}
ClusterName=mllmtest
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={spool}/ctld
SlurmdSpoolDir={spool}/d
SlurmctldPidFile={self.run_dir}/slurmctld.pid
SlurmdPidFile={self.run_dir}/slurmd.pid
SlurmctldLogFile={self.run_dir}/slurmctld.log
SlurmdLogFile={self.run_dir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge={self.min_job_age}
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MpiDefault=none
MailProg=/bin/true
GresTypes=gpu
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} Gres=gpu:{self.gpus} State=UNKNOWN
{partitions}
"""

    def gres_conf(self, node: str) -> str:
        # One line per fake device: File= is required (a bare Count= drains the node) and must
        # differ between devices; with TaskPlugin=task/none nothing ever opens them.
        lines = [
            f"NodeName={node} Name=gpu File={device}" for device in FAKE_GPU_FILES[: self.gpus]
        ]
        return f"{MARKER}\nAutoDetect=off\n" + "\n".join(lines) + "\n"

    def _write_owned(self, path: Path, text: str) -> None:
        if path.exists() and MARKER not in path.read_text(errors="replace"):
            raise SlurmUnavailable(
                f"{path} exists and was not written by this helper: this machine seems to belong "
                "to a real SLURM installation, which the test will not reconfigure"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self._wrote.append(path)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> SlurmCluster:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        if missing_commands():
            raise SlurmUnavailable(
                f"not installed: {', '.join(missing_commands())} (run .ci/install_slurm.sh)"
            )
        if os.geteuid() != 0:
            raise SlurmUnavailable("starting slurmctld/slurmd/munged needs root")
        self._acquire_lock(timeout=max(timeout, 900))
        stop_leftover_daemons()
        if slurmctld_answers() and not (SLURM_CONF.exists() and MARKER in SLURM_CONF.read_text()):
            raise SlurmUnavailable("a slurmctld that this helper did not start answers already")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("spool/ctld", "spool/d"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)

        self.node, cpus, memory_mb = node_facts()
        self._write_owned(SLURM_CONF, self.slurm_conf(self.node, cpus, memory_mb))
        self._write_owned(GRES_CONF, self.gres_conf(self.node))

        self._start_munged()
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i"])
        self._wait(slurmctld_answers, timeout, "slurmctld did not answer `scontrol ping`")
        self._start_slurmd()
        self._wait(self._node_ready, timeout, f"node {self.node} did not become idle")

    def _start_slurmd(self) -> None:
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", self.node])

    def _start_munged(self) -> None:
        if munge_works():
            return  # a running munged (e.g. the system's) is reused and left alone
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            raise SlurmUnavailable(f"{key} is missing (run .ci/install_slurm.sh)")
        for directory in (Path("/run/munge"), Path("/var/lib/munge"), Path("/var/log/munge")):
            directory.mkdir(parents=True, exist_ok=True)
            shutil.chown(directory, "munge", "munge")
        self._spawn(
            "munged", [_which("munged"), "--foreground", "--force"], user="munge", group="munge"
        )
        self._wait(munge_works, 15, "munged did not start")

    def _spawn(self, name: str, command: list[str], **kwargs) -> None:
        # Own session: a Ctrl-C meant for pytest does not take the daemons down before stop()
        # has cancelled the jobs; stop() signals the whole session.
        with open(self.run_dir / f"{name}.out", "ab") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )
        self._processes[name] = process
        with open(STATE_FILE, "a") as state:
            state.write(f"{process.pid} {' '.join(command)}\n")  # = its /proc cmdline once exec'd

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self._processes.items():
                if process.poll() is not None:
                    raise SlurmUnavailable(
                        f"{name} exited with {process.returncode}:\n{self.diagnostics()}"
                    )
            if ready():
                return
            time.sleep(0.3)
        raise SlurmUnavailable(f"{what} within {timeout:.0f} s:\n{self.diagnostics()}")

    def _node_ready(self) -> bool:
        # `down`/`unknown` are normal for a moment after slurmd registers (ReturnToService=2
        # clears them); `inval` and `drain` are configuration errors that do not clear.
        state = " ".join(_run("sinfo", "-h", "-N", "-n", self.node, "-o", "%T").stdout.split())
        if "inval" in state or "drain" in state:
            reason = _run("sinfo", "-h", "-R").stdout.strip()
            raise SlurmUnavailable(f"node state {state}: {reason}\n{self.diagnostics()}")
        return state.startswith(("idle", "mix", "alloc"))

    def diagnostics(self) -> str:
        parts = []
        for name in ("munged", "slurmctld", "slurmd", "slurmd-n1", "slurmd-n2"):
            for suffix in (".out", ".log"):
                path = self.run_dir / f"{name}{suffix}"
                if path.exists():
                    parts.append(f"--- {path} ---\n{_tail(path)}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel every job, stop the daemons this object started, remove the files it wrote."""
        if "slurmctld" in self._processes and self._processes["slurmctld"].poll() is None:
            try:
                _run("scancel", "--full", "--user", "root", timeout=10)
                deadline = time.monotonic() + 15
                while (
                    time.monotonic() < deadline
                    and _run(
                        "squeue", "-h", "-t", "RUNNING,COMPLETING,PENDING", timeout=5
                    ).stdout.strip()
                ):
                    time.sleep(0.5)
            except (subprocess.TimeoutExpired, OSError):
                pass
        slurmds = sorted(name for name in self._processes if name.startswith("slurmd"))
        for name in (*slurmds, "slurmctld", "munged"):
            process = self._processes.pop(name, None)
            if process is not None:
                _terminate(process)
        for path in self._wrote:
            if path.exists() and MARKER in path.read_text(errors="replace"):
                path.unlink()
        self._wrote.clear()
        if self._lock is not None:  # only the lock holder owns the state file
            STATE_FILE.unlink(missing_ok=True)
        self._release_lock()

    def _acquire_lock(self, timeout: float) -> None:
        self._lock = open(LOCK_FILE, "w")  # noqa: SIM115 (held for the cluster's lifetime)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SlurmUnavailable(
                        f"another test cluster holds {LOCK_FILE} for over {timeout:.0f} s"
                    ) from None
                time.sleep(1)

    def _release_lock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class TwoNodeCluster(SlurmCluster):
    """Two compute nodes on this one machine: each slurmd in a network namespace of its own
    (`ip netns` + a veth pair on a bridge; addresses only inside them), with its own node name
    (`slurmd -N`) and NodeAddr, so srun/torchrun really cross nodes. Debian's slurm-wlm is not
    built for multiple-slurmd mode; namespaces need root and iproute2. Jobs find the network
    interface every node has as GLOO_SOCKET_IFNAME.

    `nsenter --net` enters only the network namespace (`ip netns exec` would also remount /sys,
    hiding the cgroup filesystem slurmd needs). The controller stays in the host namespace and is
    reached on the bridge.
    """

    BRIDGE = "mllmbr0"
    INTERFACE = "mllm0"  # inside every node's namespace
    SUBNET = "10.77.0"
    NODES = ("n1", "n2")

    @property
    def controller_address(self) -> str:
        return f"{self.SUBNET}.1"

    def node_address(self, node: str) -> str:
        return f"{self.SUBNET}.{11 + self.NODES.index(node)}"

    def slurm_conf(self, node: str, cpus: int, memory_mb: int) -> str:
        one_node = super().slurm_conf(node, cpus, memory_mb)
        host = socket.gethostname().split(".")[0]  # slurmctld accepts only its own host name
        lines = []
        for line in one_node.splitlines():
            if line.startswith("SlurmctldHost="):
                line = f"SlurmctldHost={host}({self.controller_address})"
            elif line.startswith(("SlurmdSpoolDir=", "SlurmdPidFile=", "SlurmdLogFile=")):
                line = line.replace("/spool/d", "/spool/%n").replace("slurmd.", "slurmd-%n.")
            elif line.startswith("NodeName="):
                # The two nodes share this machine's CPUs and memory: each claims all of its CPUs
                # and a share of its memory (no task plugin binds them).
                lines += [
                    f"NodeName={name} NodeAddr={self.node_address(name)} CPUs={cpus} "
                    f"RealMemory={memory_mb // len(self.NODES)} Gres=gpu:{self.gpus} State=UNKNOWN"
                    for name in self.NODES
                ]
                continue
            elif line.startswith("PartitionName="):
                line = line.replace(f"Nodes={node} ", f"Nodes={','.join(self.NODES)} ")
            lines.append(line)
        return "\n".join(lines) + "\n"

    def gres_conf(self, node: str) -> str:
        devices = FAKE_GPU_FILES[: self.gpus]
        lines = [f"NodeName={name} Name=gpu File={dev}" for name in self.NODES for dev in devices]
        return f"{MARKER}\nAutoDetect=off\n" + "\n".join(lines) + "\n"

    def _network(self, *command: str) -> None:
        result = _run("ip", *command)
        if result.returncode != 0:
            raise SlurmUnavailable(f"ip {' '.join(command)}: {result.stderr.strip()}")

    def _start(self, timeout: float) -> None:
        if shutil.which("ip") is None or shutil.which("nsenter") is None:
            raise SlurmUnavailable("ip (iproute2) and nsenter (util-linux) are needed")
        if os.geteuid() != 0:
            raise SlurmUnavailable("network namespaces and the daemons need root")
        self._acquire_lock(timeout=max(timeout, 900))
        stop_leftover_daemons()
        self._remove_network()  # a killed earlier run's
        self._network("link", "add", self.BRIDGE, "type", "bridge")
        self._network("addr", "add", f"{self.controller_address}/24", "dev", self.BRIDGE)
        self._network("link", "set", self.BRIDGE, "up")
        for index, name in enumerate(self.NODES):
            namespace, veth = f"mllm-{name}", f"mllmv{index}"
            self._network("netns", "add", namespace)
            self._network("link", "add", veth, "type", "veth", "peer", "name", self.INTERFACE)
            self._network("link", "set", self.INTERFACE, "netns", namespace)
            self._network("link", "set", veth, "master", self.BRIDGE, "up")
            address = f"{self.node_address(name)}/24"
            self._network("-n", namespace, "addr", "add", address, "dev", self.INTERFACE)
            self._network("-n", namespace, "link", "set", self.INTERFACE, "up")
            self._network("-n", namespace, "link", "set", "lo", "up")
        super()._start(timeout)

    def _acquire_lock(self, timeout: float) -> None:
        if self._lock is None:  # taken once, before the network is set up
            super()._acquire_lock(timeout)

    def _start_slurmd(self) -> None:
        for name in self.NODES:
            self._spawn(
                f"slurmd-{name}",
                ["nsenter", f"--net=/run/netns/mllm-{name}", _which("slurmd"), "-D", "-N", name],
            )

    def _node_ready(self) -> bool:
        states = _run("sinfo", "-h", "-N", "-o", "%N %T").stdout.split("\n")
        ready = {line.split()[0] for line in states if line.split()[1:2] in (["idle"], ["mix"])}
        bad = [line for line in states if "inval" in line or "drain" in line]
        if bad:
            raise SlurmUnavailable(f"node state {bad}: {_run('sinfo', '-h', '-R').stdout}")
        return ready >= set(self.NODES)

    def _release_lock(self) -> None:
        if self._lock is not None:  # the daemons are stopped: take the network down, then unlock
            self._remove_network()
        super()._release_lock()

    def _remove_network(self) -> None:
        for name in self.NODES:
            _run("ip", "netns", "del", f"mllm-{name}")
        _run("ip", "link", "del", self.BRIDGE)


def _terminate(process: subprocess.Popen, grace: float = 10) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def stop_leftover_daemons() -> None:
    """Stop the daemons STATE_FILE lists, if they still run the recorded command (a recycled pid
    is left alone), and remove the config files this helper wrote."""
    if STATE_FILE.exists():
        daemons = [line.split(" ", 1) for line in STATE_FILE.read_text().splitlines() if line]
        alive = [int(pid) for pid, cmdline in daemons if _cmdline(int(pid)) == cmdline.strip()]
        if alive and slurmctld_answers():
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                _run("scancel", "--full", "--user", "root")
                time.sleep(1)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while any(_cmdline(pid) for pid in alive) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in alive:
            if _cmdline(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        STATE_FILE.unlink()
    for path in (SLURM_CONF, GRES_CONF):
        if path.exists() and MARKER in path.read_text(errors="replace"):
            path.unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/mllm-slurm-cluster"))  # start
    parser.add_argument("--gpus", type=int, default=1)
    args = parser.parse_args(argv)
    if args.action == "start":
        cluster = SlurmCluster(args.run_dir, gpus=args.gpus).start()
        # The daemons are in their own sessions and outlive this process on purpose; STATE_FILE
        # tells `stop` (or the next start) which they are.
        cluster._processes.clear()
        cluster._wrote.clear()
        cluster._release_lock()
        print(f"cluster up on node {cluster.node}; state and logs in {args.run_dir}")
        print("stop it with: python -m tests.slurm.cluster stop")
    else:
        lock = SlurmCluster(args.run_dir)
        lock._acquire_lock(timeout=60)
        try:
            stop_leftover_daemons()
        finally:
            lock._release_lock()


if __name__ == "__main__":
    try:
        main()
    except SlurmUnavailable as error:
        sys.exit(f"SLURM unavailable: {error}")
