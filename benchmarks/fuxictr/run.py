"""FuxiCTR cross-check on Frappe x1 (issue 15, part 4): its WideDeep and DNN, BARS's configs.

Run with FuxiCTR's own venv (made by benchmarks/fuxictr/setup.sh), niced, in the background:

    nohup nice -n 10 /work/.fuxictr-venv/bin/python benchmarks/fuxictr/run.py \
        > /work/.fuxictr-work/run.log 2>&1 &

Each finished (model, seed) is appended to benchmarks/results/fuxictr/results.csv and
summary.md is rewritten; a rerun skips what results.csv already holds (resumable).
Work files (the libFM files as BARS's csv, FuxiCTR's parquet, checkpoints) go to --work,
outside the project.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import logging
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

FIELDS = ["user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather",
          "country", "city"]
DATASET_ID = "frappe_x1"

# BARS's published settings, as their run logs print them:
# ranking/ctr/WideDeep/WideDeep_frappe_x1/WideDeep_frappe_x1_030_af559975.log and
# ranking/ctr/DNN/DNN_frappe_x1/DNN_frappe_x1_001_ad0f0fce.log (reczoo/BARS).
COMMON = dict(loss="binary_crossentropy", metrics=["AUC", "logloss"],
              task="binary_classification", optimizer="adam", learning_rate=1e-3,
              embedding_dim=10, hidden_units=[400, 400, 400], hidden_activations="relu",
              batch_norm=True, net_regularizer=0, batch_size=4096, epochs=100, shuffle=True,
              monitor="AUC", monitor_mode="max", early_stop_patience=2, save_best_only=True,
              verbose=0, num_workers=0)
CONFIGS = {
    "WideDeep": dict(COMMON, model="WideDeep", net_dropout=0.6, embedding_regularizer=0.1),
    "DNN": dict(COMMON, model="DNN", net_dropout=0.2, embedding_regularizer=0.05),
}
# BARS's reported test AUC / log loss over its 5 runs (the READMEs beside those logs).
BARS_PUBLISHED = {"WideDeep": (0.983073, 0.00078622, 0.153978),
                  "DNN": (0.984045, 0.00051004, 0.158370)}

# Ours beside them (benchmarks/RESULTS.md, "Sanity anchor"): experiment=bars_frappe, 5 seeds.
OURS = {"WideDeep": "0.9829 ± 0.0003 (5 seeds, `experiment=bars_frappe`)",
        "DNN": "not run at BARS's DNN setting"}

COLUMNS = ["model", "seed", "test_auc", "test_logloss", "valid_auc", "valid_logloss",
           "best_epoch", "epochs", "wall_s", "fuxictr", "torch", "cpu", "finished_utc"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return platform.processor() or "unknown"


def libfm_to_csv(src: Path, dst: Path) -> None:
    """BARS's Frappe_x1 csv layout: label (0/1) then the 10 fields, each value its libFM index."""
    if dst.exists():
        return
    tmp = dst.with_suffix(".tmp")
    with src.open() as fin, tmp.open("w", newline="") as fout:
        out = csv.writer(fout)
        out.writerow(["label", *FIELDS])
        for n, line in enumerate(fin, 1):
            tokens = line.split()
            if len(tokens) != 1 + len(FIELDS):
                tmp.unlink()
                raise SystemExit(f"run.py: error: {src}:{n}: expected 11 tokens, got {len(tokens)}")
            label = 1 if tokens[0] == "1" else 0
            out.writerow([label, *(t.split(":", 1)[0] for t in tokens[1:])])
    tmp.rename(dst)


def build_data(data_dir: Path, work: Path) -> dict:
    """Convert the splits to csv and let FuxiCTR's own pipeline tokenise them to parquet."""
    from fuxictr.preprocess import FeatureProcessor, build_dataset

    csv_dir = work / "csv"
    csv_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "valid", "test"):
        src = data_dir / f"{split}.libfm"
        if not src.exists():
            raise SystemExit(f"run.py: error: {src} not found (--data points at Frappe x1)")
        paths[split] = csv_dir / f"{split}.csv"
        libfm_to_csv(src, paths[split])
    data_root = work / "data"
    built = data_root / DATASET_ID
    if not all((built / f"{s}.parquet").exists() for s in ("train", "valid", "test")):
        shutil.rmtree(built, ignore_errors=True)  # a half-built dir would be skipped by FuxiCTR
        import ray

        # FuxiCTR's tokenisation runs on Ray; start it without the dashboard (shared machine).
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.ERROR)
    # dtype str: the values are ids; BARS's config says float, which would make "451" "451.0".
    processor = FeatureProcessor(
        feature_cols=[{"name": FIELDS, "active": True, "dtype": "str", "type": "categorical"}],
        label_col={"name": "label", "dtype": "float"},
        dataset_id=DATASET_ID, data_root=str(data_root) + "/")
    train, valid, test = build_dataset(processor, train_data=str(paths["train"]),
                                       valid_data=str(paths["valid"]),
                                       test_data=str(paths["test"]), data_format="csv",
                                       min_categr_count=1)
    import ray

    if ray.is_initialized():
        ray.shutdown()  # only the tokenisation uses it
    return dict(data_root=str(data_root) + "/", data_format="npz",
                **{f"{s}_data": to_npz(Path(p)) for s, p in
                   (("train", train), ("valid", valid), ("test", test))})


def to_npz(parquet: Path) -> str:
    """FuxiCTR's tokenised split as the .npz its in-memory NpzDataLoader reads.

    The wheel's default loader streams parquet through Ray Data: on 2 shared cores it spent
    ~80 s an epoch and 12-20 s re-reading validation at every epoch. NpzDataLoader (also in
    the wheel, the loader of FuxiCTR <= 2.2; see loader.py) holds the same ids in memory and
    shuffles with torch's RNG, so a seed fixes the batch order (Ray's shuffle is unseeded).
    """
    import numpy as np
    import pyarrow.parquet as pq

    npz = parquet.with_suffix(".npz")
    if not npz.exists():
        table = pq.read_table(parquet)
        tmp = parquet.with_suffix(".tmp.npz")
        np.savez(tmp, **{c: table.column(c).to_numpy() for c in table.column_names})
        tmp.rename(npz)
    return str(npz)


def train_one(model_name: str, seed: int, data: dict, work: Path, log_dir: Path,
              epochs: int) -> dict:
    import fuxictr
    import models
    import torch
    from fuxictr.features import FeatureMap
    from fuxictr.pytorch.dataloaders import RankDataLoader
    from fuxictr.pytorch.torch_utils import seed_everything
    from loader import NpzBatchLoader

    params = dict(CONFIGS[model_name], **data, dataset_id=DATASET_ID, seed=seed, gpu=-1,
                  model_root=str(work / "ckpt") + "/", model_id=f"{model_name}_seed{seed}")
    params.update(epochs=epochs, data_loader=NpzBatchLoader)
    handler = logging.FileHandler(log_dir / f"{model_name}_seed{seed}.log", mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.info("Params: %s", params)
        start = time.monotonic()
        seed_everything(seed=seed)
        data_dir = os.path.join(params["data_root"], DATASET_ID)
        feature_map = FeatureMap(DATASET_ID, data_dir)
        feature_map.load(os.path.join(data_dir, "feature_map.json"), params)
        os.makedirs(os.path.join(params["model_root"], DATASET_ID), exist_ok=True)
        model = getattr(models, model_name)(feature_map, **params)
        model.count_parameters()
        train_gen, valid_gen = RankDataLoader(feature_map, stage="train", **params)
        model.fit(train_gen, validation_data=valid_gen, **params)
        logging.info("****** Validation evaluation ******")
        valid = model.evaluate(valid_gen)
        logging.info("******** Test evaluation ********")
        test = model.evaluate(RankDataLoader(feature_map, stage="test", **params))
        wall = time.monotonic() - start
    finally:
        root.removeHandler(handler)
        handler.close()
    return dict(model=model_name, seed=seed, test_auc=f"{test['AUC']:.6f}",
                test_logloss=f"{test['logloss']:.6f}", valid_auc=f"{valid['AUC']:.6f}",
                valid_logloss=f"{valid['logloss']:.6f}", best_epoch=model.best_epoch,
                epochs=model._epoch_index + 1, wall_s=f"{wall:.0f}",
                fuxictr=fuxictr.__version__, torch=torch.__version__, cpu=cpu_model(),
                finished_utc=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"))


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def append_row(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        out = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            out.writeheader()
        out.writerow(row)


def mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "-"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def write_summary(out: Path, rows: list[dict]) -> None:
    finished = {(r["model"], int(r["seed"])) for r in rows}
    pending = [(m, s) for s in (0, 1, 2) for m in CONFIGS if (m, s) not in finished]
    lines = ["# FuxiCTR cross-check on Frappe x1 (issue 15, part 4)", "",
             "Written by `benchmarks/fuxictr/run.py` (FuxiCTR's WideDeep and DNN with BARS's "
             "published Frappe x1 configs, run in FuxiCTR's own venv; see benchmarks/README.md).",
             "", "| model | seed | test AUC | test log loss | best epoch / epochs | wall |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['seed']} | {float(r['test_auc']):.4f} | "
                     f"{float(r['test_logloss']):.4f} | {r['best_epoch']} / {r['epochs']} | "
                     f"{int(r['wall_s']) / 60:.1f} min |")
    lines += ["", "| model | runs | test AUC (mean ± sd) | test log loss | BARS published "
              "(5 runs, test AUC) | widedeep, test AUC |", "|---|---|---|---|---|---|"]
    for name, (auc, sd, ll) in BARS_PUBLISHED.items():
        mine = [r for r in rows if r["model"] == name]
        lines.append(f"| {name} | {len(mine)} | {mean_sd([float(r['test_auc']) for r in mine])} "
                     f"| {mean_sd([float(r['test_logloss']) for r in mine])} | "
                     f"{auc:.4f} ± {sd:.4f} (log loss {ll:.4f}) | {OURS[name]} |")
    if rows:
        r = rows[-1]
        lines += ["", f"fuxictr {r['fuxictr']}, torch {r['torch']}, CPU {r['cpu']}, one torch "
                  "thread per run. Wall times are on 2 cores shared with the study and other "
                  "jobs (upper bounds)."]
    if pending:
        lines += ["", "Not finished yet: " + ", ".join(f"{m} seed {s}" for m, s in pending) + "."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ.get("WIDEDEEP_DATA_DIR", "/work/shared/datasets")) / "frappe/x1"
    parser.add_argument("--data", type=Path, default=default_data, help="Frappe x1 libFM dir")
    parser.add_argument("--work", type=Path,
                        default=Path(os.environ.get("FUXICTR_WORK", "/work/.fuxictr-work")))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/fuxictr")
    parser.add_argument("--models", default="WideDeep,DNN")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on 2 busy cores, 2 threads cost 3.6x the CPU)")
    parser.add_argument("--summary", action="store_true",
                        help="only rewrite summary.md from results.csv")
    parser.add_argument("--epochs", type=int, default=100,
                        help="cap (BARS: 100); lower only to smoke-test")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    args.out.mkdir(parents=True, exist_ok=True)
    log_dir = args.out / "logs"
    log_dir.mkdir(exist_ok=True)
    results = args.out / "results.csv"
    if args.summary:
        write_summary(args.out, read_rows(results))
        return 0
    wanted = [(m, int(s)) for s in args.seeds.split(",") for m in args.models.split(",")]
    unknown = sorted({m for m, _ in wanted} - CONFIGS.keys())
    if unknown:
        parser.error(f"--models: unknown {unknown}; known {sorted(CONFIGS)}")
    done = {(r["model"], int(r["seed"])) for r in read_rows(results)}
    todo = [key for key in wanted if key not in done]
    logging.info("finished already: %s; to run: %s", sorted(done), todo)
    if todo:
        import torch

        torch.set_num_threads(args.threads)
        data = build_data(args.data, args.work)
    for model_name, seed in todo:
        row = train_one(model_name, seed, data, args.work, log_dir, args.epochs)
        append_row(results, row)
        logging.info("finished %s", row)
        write_summary(args.out, read_rows(results))
    write_summary(args.out, read_rows(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
