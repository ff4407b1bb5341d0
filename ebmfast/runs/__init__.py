"""ebmfast.runs: run directories for the CLI (and for scripts that want the same layout).

    from ebmfast.runs import Runner, open_run, load_trained
    run = open_run("runs/ot")                  # config.json + checkpoint config
    trainer, data = load_trained(run)          # trainer with the last checkpoint loaded

Modules: ``spec`` (RunConfig, config files, --set parsing), ``data`` (data loading,
fingerprints, held-out data), ``methods`` (step-size halving, gradient norms: generic, through
each trainer's own facts), ``evaluation`` (MMD ratio to the noise floor, modes), ``loop`` (Runner:
fit + progress + logs + checkpoints + best + divergence rollback), ``figures``, ``rundir``, ``io``,
``study`` (the shared pieces of the scripted studies under ``examples/``). Checkpoints and JSONL
logs are the trainers' (``ebmfast.trainers.checkpoint``, ``ebmfast.trainers.jsonl``).
"""
from .loop import Runner, RunDiverged, RunInterrupted, isolated_rng
from .rundir import RunPaths, load_trained, open_run
from .spec import RunConfig, SpecError

__all__ = ["Runner", "RunDiverged", "RunInterrupted", "isolated_rng", "RunPaths", "open_run", "load_trained",
           "RunConfig", "SpecError"]
