"""Real SLURM jobs through the repository's profile: `snakemake --profile slurm <target>`.

Marked `slurm`; all but the first (the plugin's sbatch line for the GPU keys, no cluster needed) are
skipped unless a SLURM controller answers (`scontrol ping`, then `sinfo`); CI starts
a one-node cluster with fake GPUs first (`scripts/slurm/start-local-cluster.sh`, docs/slurm.md).
Every test copies the profile (`slurm/`) into a temporary directory and runs from there, exactly as a
user runs it from the repository root, then checks that SLURM (not Snakemake locally) ran the jobs:

- the GPU resource keys of docs/slurm.md give ONE task owning all GPUs, and the command runs once;
- a job signalled with SIGUSR1 checkpoints, requeues itself with the engine's own `requeue()` and exit
  status, is started again by SLURM under the same job id, resumes and the workflow completes; then the
  same with the real trainer (`protoseg train ... --resume auto`);
- the pipeline's `mini_smoke` target (make-mini, train, evaluate, table) through SLURM.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The plugin polls job states after `init-seconds` (40 by default) and then backs off; 5 s keeps the
# tests short. squeue must keep finished jobs >= 3x this long (MinJobAge; the local cluster: 600 s).
FAST_POLL = ("--slurm-init-seconds-before-status-checks", "5")


def _answers(*cmd: str, timeout: float = 120) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _cluster_state() -> str | None:
    """None when SLURM is up (a controller answers and a partition has a usable node), else why not."""
    if shutil.which("sinfo") is None or shutil.which("scontrol") is None:
        return "no SLURM client (sinfo/scontrol) on PATH"
    ping = _answers("scontrol", "ping", timeout=120)  # a hang guard, not a speed limit
    if ping is None or "UP" not in ping:
        return "no SLURM controller answers (`scontrol ping`)"
    states = _answers("sinfo", "-h", "-o", "%t")
    if not states or not re.search(r"^(idle|mix|alloc)", states, re.M):
        return f"no idle/mixed SLURM node (`sinfo` states: {states!r})"
    return None


_WHY_NOT = _cluster_state()
pytestmark = [pytest.mark.slurm, pytest.mark.slow]
needs_cluster = pytest.mark.skipif(
    _WHY_NOT is not None, reason=f"SLURM cluster not up ({_WHY_NOT}); start the local one with "
                                 "`sudo bash scripts/slurm/start-local-cluster.sh` (docs/slurm.md)")


def _node_gpus() -> int:
    """GPUs (gres gpu) of the largest node of the default partition."""
    out = _answers("sinfo", "-h", "-o", "%G") or ""
    counts = [int(m.group(1)) for m in re.finditer(r"gpu(?::[\w.-]+)?:(\d+)", out)]
    return max(counts, default=0)


def _env() -> dict[str, str]:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1",
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("CUDA_VISIBLE_DEVICES", None)  # SLURM sets it for the GPU jobs
    # an enclosing SLURM job (the tests run inside one) must not leak into the submitted jobs
    for var in list(env):
        if var.startswith(("SLURM_", "SBATCH_", "SRUN_")):
            env.pop(var)
    return env


def _slurm_job_ids(work: Path) -> list[str]:
    """SLURM job ids the plugin submitted from `work` (its log files are named <jobid>.log)."""
    logs = work / ".snakemake" / "slurm_logs"
    return sorted({p.stem for p in logs.rglob("*.log")} if logs.is_dir() else set(), key=int)


def _job_info(job: str) -> str:
    return _answers("scontrol", "show", "job", job) or ""


def _with_profile(work: Path) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "slurm", work / "slurm")
    return work


def _start(work: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "snakemake"), "--profile", "slurm", *FAST_POLL,
                             "--slurm-keep-successful-logs", "--retries", "0", *args],
                            cwd=work, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)


def _finish(work: Path, proc: subprocess.Popen, timeout: float) -> str:
    """Wait for Snakemake; on timeout or failure cancel its SLURM jobs and fail with its output."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate(timeout=180)
        out = f"TIMEOUT after {timeout} s\n{out}"
    if proc.returncode != 0 or out.startswith("TIMEOUT"):
        jobs = _slurm_job_ids(work)
        info = "\n".join(_job_info(j) for j in jobs)
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in (work / ".snakemake").rglob("slurm_logs/**/*.log"))
        if jobs:
            subprocess.run(["scancel", *jobs], capture_output=True, timeout=180)
        pytest.fail(f"snakemake --profile slurm failed ({proc.returncode}):\n{out[-6000:]}\n"
                    f"{info[-3000:]}\n{logs[-6000:]}")
    return out


def _run(work: Path, *args: str, timeout: float = 300) -> str:
    return _finish(work, _start(work, *args), timeout)


def _assert_ran_in_slurm(work: Path, n_jobs: int) -> list[str]:
    jobs = _slurm_job_ids(work)
    assert len(jobs) == n_jobs, jobs
    states = _answers("squeue", "--states=all", "-h", "-o", "%i %T", "-j", ",".join(jobs)) or ""
    for job in jobs:  # finished jobs stay visible for MinJobAge (600 s on the local cluster)
        assert re.search(rf"^{job} COMPLETED$", states, re.M), states
    return jobs


# ---- the GPU resource keys ------------------------------------------------------------------------
def _sbatch(threads: int, **resources) -> str:
    """The sbatch line the plugin builds for these rule resources (without the --gpus it adds later)."""
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command

    class Res(dict):
        __getattr__ = dict.__getitem__

    job = SimpleNamespace(resources=Res(resources), threads=threads)
    return get_submit_command(job, dict(run_uuid="u", slurm_logfile="l", comment_str="c", account="",
                                        partition="", workdir="."))


def test_plugin_sbatch_line_for_the_documented_gpu_keys():
    """No cluster needed: the trap of docs/slurm.md and the keys that avoid it, as sbatch options."""
    trap = _sbatch(32, gpu=4, tasks=1, cpus_per_task=32)
    assert "--ntasks-per-gpu=1" in trap and "--cpus-per-task=32" in trap  # 4 tasks x 32 CPUs
    ok = _sbatch(32, gpu=4, tasks=1, tasks_per_gpu=0, nodes=1, cpus_per_task=32)
    assert "--ntasks" not in ok and "--nodes=1" in ok and "--cpus-per-task=32" in ok, ok
    cpu = _sbatch(2, tasks_per_gpu=0, cpus_per_task=2)
    assert "--ntasks=1" in cpu and "--cpus-per-task=2" in cpu, cpu


_PROBE = ("echo ran job=$SLURM_JOB_ID cvd=${{CUDA_VISIBLE_DEVICES:-}} "
          "$(scontrol show job $SLURM_JOB_ID | grep -o -E 'NumNodes=[0-9]+|NumTasks=[0-9]+|NumCPUs=[0-9]+' "
          "| tr '\\n' ' ') >> {output}")


@needs_cluster
@pytest.mark.timeout(400)
def test_gpu_job_is_one_task_owning_all_gpus(tmp_path):
    gpus = _node_gpus()
    if gpus < 1:
        pytest.skip("no gpu gres on the SLURM node (the local cluster has 2 fake GPUs)")
    work = _with_profile(tmp_path / "w")
    (work / "Snakefile").write_text(f'''
rule all:
    input: "gpu.txt", "cpu.txt"

rule gpu:  # the train rule's keys (docs/slurm.md): one task, all GPUs, one node
    output: "gpu.txt"
    threads: 1
    resources: gpu={gpus}, tasks=1, tasks_per_gpu=0, nodes=1, cpus_per_task=1, mem_mb=500, runtime=5
    shell: {_PROBE!r}

rule cpu:
    output: "cpu.txt"
    resources: mem_mb=500, runtime=5
    shell: {_PROBE!r}
''')
    _run(work)
    _assert_ran_in_slurm(work, 2)
    gpu = (work / "gpu.txt").read_text().splitlines()
    assert len(gpu) == 1, gpu  # the command ran once, not once per GPU (plugin issues #316, #459)
    line = gpu[0]
    assert re.search(r"job=\d+ ", line), line
    assert len(re.search(r"cvd=(\S*)", line).group(1).split(",")) == gpus, line
    assert "NumNodes=1" in line and "NumTasks=1" in line and "NumCPUs=1" in line, line
    cpu = (work / "cpu.txt").read_text().splitlines()
    assert len(cpu) == 1 and "cvd= " in cpu[0] and "NumTasks=1" in cpu[0], cpu


# ---- preemption: SIGUSR1 -> checkpoint, scontrol requeue, exit 75 -> same job runs again, resumes ---
_TRAINER = r'''
import os, signal, sys, time
from pathlib import Path
from protoseg.engine.signals import EXIT_PREEMPTED, requeue  # the engine's own requeue path

out, state, trace = Path(sys.argv[1]), Path("state.txt"), Path("trace.log")
flag = []
for s in (signal.SIGUSR1, signal.SIGTERM):
    signal.signal(s, lambda n, f: flag.append(n))
start = int(state.read_text()) if state.exists() else 0
def note(msg):
    with open(trace, "a") as f:
        print(msg, file=f, flush=True)
note(f"start {start} job={os.environ.get('SLURM_JOB_ID')}")
for it in range(start, 40):
    time.sleep(0.25)
    if flag:
        state.write_text(str(it + 1))  # the checkpoint
        ok = requeue()
        note(f"signal {flag[0]} at {it + 1} requeued={ok}")
        sys.exit(EXIT_PREEMPTED)
out.write_text("done\n")
note("finished")
'''


@needs_cluster
@pytest.mark.timeout(500)
def test_sigusr1_checkpoints_requeues_and_the_workflow_completes(tmp_path):
    work = _with_profile(tmp_path / "w")
    (work / "trainer.py").write_text(_TRAINER)
    (work / "Snakefile").write_text(f'''
rule train:
    output: "final.txt"
    threads: 1
    resources: mem_mb=1000, runtime=10
    shell: "{sys.executable} trainer.py {{output}}"
''')
    proc = _start(work)
    trace = work / "trace.log"
    deadline = time.time() + 600
    while not (trace.is_file() and "start 0" in trace.read_text()):
        if proc.poll() is not None or time.time() > deadline:
            _finish(work, proc, 1)
            pytest.fail(f"the job never started: {trace.read_text() if trace.is_file() else ''}")
        time.sleep(0.5)
    job = re.search(r"job=(\d+)", trace.read_text()).group(1)
    # what `sbatch --signal=USR1@<s>` sends before the time limit: every process of the job step
    subprocess.run(["scancel", "--signal=USR1", job], check=True, timeout=180)
    # a requeued job starts again after cred_expire (local cluster 20 s, SLURM's default 120 s)
    _finish(work, proc, 420)

    lines = trace.read_text().splitlines()
    assert lines[0] == f"start 0 job={job}", lines
    m = re.fullmatch(r"signal 10 at (\d+) requeued=True", lines[1])
    assert m, lines
    assert lines[2:] == [f"start {m.group(1)} job={job}", "finished"], lines  # same job id, resumed
    assert (work / "final.txt").read_text() == "done\n"
    assert _slurm_job_ids(work) == [job]  # no resubmission: SLURM restarted the same job
    assert "Restarts=1" in _job_info(job)
    _assert_ran_in_slurm(work, 1)


@needs_cluster
@pytest.mark.timeout(600)
def test_engine_preempted_in_slurm_resumes_in_the_requeued_job(tmp_path):
    """The real trainer (`protoseg train`) in a SLURM job: SIGUSR1 -> checkpoint at the current
    iteration, `scontrol requeue`, exit 75 -> SLURM restarts the same job -> `--resume auto` continues."""
    sys.path.insert(0, str(REPO / "tests"))
    from engine_helpers import make_root, tiny_config, write_config

    work = _with_profile(tmp_path / "w")
    root = make_root(tmp_path / "data")
    iters = 40
    cfg = tiny_config(root, work / "runs", "pre", train={"iters": iters, "ckpt_interval": 1000,
                                                         "log_interval": 1, "final_eval": False})
    write_config(cfg, work / "run.yaml")
    (work / "Snakefile").write_text(f'''
rule train:
    output: "runs/pre/checkpoints/final.pt"
    threads: 1
    resources: mem_mb=3000, runtime=15
    # not a `log:` (Snakemake empties those when the requeued job starts again): both runs append here
    shell: "OMP_NUM_THREADS=1 {sys.executable} -m protoseg.cli train --config run.yaml --resume auto >> train.log 2>&1"
''')
    proc = _start(work)
    rows = work / "runs/pre/train_log.jsonl"
    deadline = time.time() + 600
    while not (rows.is_file() and len(rows.read_text().splitlines()) >= 3):  # the loop (and its handler) runs
        if proc.poll() is not None or time.time() > deadline:
            _finish(work, proc, 1)
            pytest.fail("training never started in the SLURM job")
        time.sleep(0.2)
    (job,) = _slurm_job_ids(work)
    subprocess.run(["scancel", "--signal=USR1", job], check=True, timeout=180)
    _finish(work, proc, 420)

    log = (work / "train.log").read_text()
    m = re.search(r"resumed from \S+iter_0*(\d+)\.pt at iteration (\d+)", log)
    assert m and m.group(1) == m.group(2) and 3 <= int(m.group(2)) < iters, log[-3000:]
    assert re.search(rf"iteration {m.group(2)}.*requeued.*status 75", log), log[-3000:]
    assert (work / "runs/pre/checkpoints/final.pt").is_file()
    assert "Restarts=1" in _job_info(job)
    _assert_ran_in_slurm(work, 1)  # one SLURM job, restarted by SLURM, no resubmission by Snakemake


# ---- the pipeline ---------------------------------------------------------------------------------
PIPELINE_FILES = ("Snakefile", "workflows", "configs")


@needs_cluster
@pytest.mark.timeout(900)
def test_mini_smoke_through_slurm(tmp_path):
    if not all((REPO / name).exists() for name in PIPELINE_FILES) or "rule mini_smoke" not in (
            REPO / "Snakefile").read_text():
        pytest.skip("no mini_smoke target in the Snakefile")
    work = _with_profile(tmp_path / "w")
    for name in PIPELINE_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, work / name)
    out = _run(work, "mini_smoke", timeout=840)
    csv = (work / "results/smoke/smoke.csv").read_text().splitlines()
    assert len(csv) == 2, csv
    jobs = _slurm_job_ids(work)
    assert jobs, out
    local_rules = set(re.findall(r"^localrule (\w+):", out, re.M))
    _assert_ran_in_slurm(work, len(jobs))
    logs = work / ".snakemake/slurm_logs"
    rules = {p.relative_to(logs).parts[0].removeprefix("rule_") for p in logs.rglob("*.log")}
    assert {"make_mini", "train", "evaluate"} <= rules, rules
    # only the target and the run-config writer (a submit-host step, no compute) run locally
    assert local_rules and local_rules <= {"mini_smoke", "run_config"}, (local_rules, out)
    assert "Nothing to be done" in subprocess.run(
        [str(BIN / "snakemake"), "--profile", "slurm", "-n", "mini_smoke"], cwd=work, env=_env(),
        capture_output=True, text=True, timeout=120).stdout
