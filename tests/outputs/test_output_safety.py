"""No output destroys an input or data lenet-edge did not write (issue 14).

The property, checked for every writing command: with its outputs pointed at each of its
inputs (however spelled: relative, ``..``, symlink, hard link), at a folder of user files, at
``.``, at a symlink and at a device, nothing that existed before is changed, unless the
command owns it (a previous output of the same command, or a file the user named as output).
A snapshot of the whole world (every path's type, bytes, mode and link target) is compared.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lenet_edge.cli import main
from lenet_edge.fsutil import (
    OutputRefused,
    atomic_dir,
    atomic_write_bytes,
    check_not_input,
    check_output_dir,
)

World = dict[str, tuple[str, ...]]


def snapshot(root: Path) -> World:
    """Every path under ``root`` (links not followed): kind, content digest, mode, target."""
    out: World = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = str(p.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", os.readlink(p))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", oct(st.st_mode))
        elif stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            out[rel] = ("file", digest, oct(st.st_mode), str(st.st_ino))
        else:
            out[rel] = ("special", oct(stat.S_IFMT(st.st_mode)))
    return out


def user_folder(root: Path) -> Path:
    """A folder of someone's work: what a mistaken ``--out`` must never touch."""
    d = root / "project"
    (d / "src").mkdir(parents=True)
    (d / "notes.txt").write_text("my notes\n")
    (d / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    (d / "export.json").write_text('{"mine": true}\n')  # a same-named file, not lenet-edge's
    return d


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


Check = Callable[[list[str], int], str]


@pytest.fixture
def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Check:
    """``check(argv, want_code)``: run the CLI in ``tmp_path``; assert the exit code and that
    the world under ``tmp_path`` is unchanged; return stderr."""
    monkeypatch.chdir(tmp_path)

    def check(argv: list[str], want: int) -> str:
        before = snapshot(tmp_path)
        code, err = run_cli(argv, capsys)
        assert code == want, (argv, code, err)
        assert snapshot(tmp_path) == before, argv
        return err

    return check


# --------------------------------------------------------------------------------------------
# The shared check, unit by unit


def test_same_file_however_spelled(tmp_path: Path) -> None:
    model = tmp_path / "run" / "model.tflite"
    model.parent.mkdir()
    model.write_bytes(b"x")
    (tmp_path / "link.tflite").symlink_to(model)
    os.link(model, tmp_path / "hard.tflite")
    for spelling in (
        model,
        tmp_path / "run" / ".." / "run" / "model.tflite",
        tmp_path / "link.tflite",
        tmp_path / "hard.tflite",
    ):
        with pytest.raises(OutputRefused, match="would overwrite the input"):
            check_not_input(spelling, [model])
    check_not_input(tmp_path / "other.json", [model])  # a new file is fine


def test_directory_output_holding_an_input_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "run" / "model.tflite"
    model.parent.mkdir()
    model.write_bytes(b"x")
    with pytest.raises(OutputRefused, match="contains the input"):
        check_output_dir(tmp_path / "run", command="export-c", record="export.json", inputs=[model])
    with pytest.raises(OutputRefused, match="contains the input"):
        check_output_dir(tmp_path, command="export-c", record="export.json", inputs=[model])


def test_directory_of_user_files_is_refused_naming_them(tmp_path: Path) -> None:
    d = user_folder(tmp_path)
    with pytest.raises(OutputRefused, match=r"did not write \(export.json, notes.txt, src\)"):
        check_output_dir(d, command="export-c", record="export.json")
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty", command="export-c", record="export.json")
    prev = tmp_path / "prev"
    prev.mkdir()
    (prev / "export.json").write_text('{"tool": "lenet-edge 0.1.0"}')
    assert check_output_dir(prev, command="export-c", record="export.json") == prev


def test_atomic_dir_keeps_a_symlinked_directory_a_link(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.mkdir()
    (target / "export.json").write_text('{"tool": "lenet-edge 0.1.0"}')
    link = tmp_path / "out"
    link.symlink_to(target)
    with atomic_dir(link, command="export-c", record="export.json") as tmp:
        (tmp / "export.json").write_text('{"tool": "lenet-edge 0.1.0", "new": 1}')
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert '"new"' in (target / "export.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "real"]  # no .tmp left


def test_atomic_dir_rechecks_before_the_swap(tmp_path: Path) -> None:
    """A folder that a user fills while the command works is not swapped out."""
    d = tmp_path / "out"
    with pytest.raises(OutputRefused), atomic_dir(d, command="export-c", record="export.json"):
        d.mkdir()
        (d / "thesis.tex").write_text("months of work")
    assert (d / "thesis.tex").read_text() == "months of work"


def test_symlink_output_replaces_the_target_and_keeps_the_link(tmp_path: Path) -> None:
    target = tmp_path / "results" / "verify.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "results" / "created.json")
    atomic_write_bytes(dangling, b"made")
    assert dangling.is_symlink() and (tmp_path / "results" / "created.json").read_bytes() == b"made"
    assert not [p for p in tmp_path.rglob(".*.tmp")]


def test_symlink_loop_is_a_one_line_refusal(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(OutputRefused):
        atomic_write_bytes(a, b"x")


def test_devices_and_pipes_are_written_through(tmp_path: Path) -> None:
    atomic_write_bytes("/dev/null", b"discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    atomic_write_bytes(fifo, b"through the pipe")
    reader.join(timeout=30)
    assert got == [b"through the pipe"] and stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_dash_is_stdout() -> None:
    code = "from lenet_edge.fsutil import atomic_write_bytes; atomic_write_bytes('-', b'{}\\n')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert out.stdout == b"{}\n"


# --------------------------------------------------------------------------------------------
# Every writing command, end to end


@pytest.fixture
def tflite_in(tmp_path: Path, int8_model: Callable[..., Path]) -> Path:
    """The int8 model inside a run folder that also holds other work."""
    run = tmp_path / "run"
    run.mkdir()
    model = run / "model_int8.tflite"
    model.write_bytes(int8_model().read_bytes())
    (run / "train.json").write_text('{"tool": "lenet-edge 0.1.0"}\n')
    (run / "model.keras").write_bytes(b"PK keras stand-in")
    return model


def test_export_c_never_deletes_the_run_folder(
    tflite_in: Path, tmp_path: Path, world: Check
) -> None:
    run = tflite_in.parent
    user = user_folder(tmp_path)
    (tmp_path / "to_project").symlink_to(user)
    m = str(tflite_in)
    base = ["export-c", m, "--test-vectors", "2"]
    err = world([*base, "--out", str(run)], 2)  # the headline case
    assert "contains the input" in err
    world([*base, "--out", "run"], 2)
    world([*base, "--out", "run/../run/"], 2)
    world([*base, "--out", str(user)], 2)
    world([*base, "--out", "to_project"], 2)
    world([*base, "--out", "."], 2)
    world([*base, "--out", m], 2)
    world([*base, "--out", "/dev/null"], 2)
    os.chdir(user)
    world([*base, "--out", "."], 2)


def test_export_c_replaces_only_its_own_previous_output(
    tflite_in: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c"
    code, err = run_cli(["export-c", str(tflite_in), "--out", str(out), "-q"], capsys)
    assert code == 0, err
    first = snapshot(out)
    code, err = run_cli(["export-c", str(tflite_in), "--out", str(out), "-q"], capsys)
    assert code == 0, err
    assert {k: v[:2] for k, v in snapshot(out).items()} == {k: v[:2] for k, v in first.items()}


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink", "hardlink"])
def test_verify_json_never_overwrites_its_model(
    tflite_in: Path, tmp_path: Path, world: Check, spelling: str
) -> None:
    target = {
        "same": tflite_in,
        "dotdot": tflite_in.parent / ".." / "run" / tflite_in.name,
        "symlink": tmp_path / "alias.json",
        "hardlink": tmp_path / "hard.json",
    }[spelling]
    if spelling == "symlink":
        target.symlink_to(tflite_in)
    if spelling == "hardlink":
        os.link(tflite_in, target)
    err = world(["verify", str(tflite_in), "--json", str(target)], 2)
    assert err.startswith("error: --json ") and err.count("\n") == 1


def test_verify_json_to_a_device_or_a_folder(tflite_in: Path, tmp_path: Path, world: Check) -> None:
    world(["verify", str(tflite_in), "--json", str(user_folder(tmp_path))], 2)
    world(["verify", str(tflite_in), "--json", "/dev/null", "-q"], 0)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_quantize_never_overwrites_its_model(
    trained_model: Callable[..., Path], tmp_path: Path, world: Check
) -> None:
    keras = tmp_path / "model.keras"
    keras.write_bytes((trained_model() / "model.keras").read_bytes())
    os.link(keras, tmp_path / "hard.tflite")
    world(["quantize", str(keras), "--out", str(tmp_path / "hard.tflite")], 2)
    world(
        [
            "quantize",
            str(keras),
            "--out",
            str(tmp_path / "q.tflite"),
            "--quant-json",
            "model.keras",
        ],
        2,
    )
    world(["quantize", str(keras), "--out", str(user_folder(tmp_path))], 2)


def test_train_and_bench_refuse_foreign_folders(tmp_path: Path, world: Check) -> None:
    user = user_folder(tmp_path)
    (tmp_path / "to_project").symlink_to(user)
    for cmd in (["train", "--epochs", "1"], ["bench"]):
        world([*cmd, "--out", str(user)], 2)
        world([*cmd, "--out", "to_project"], 2)
        world([*cmd, "--out", "/dev/null"], 2)
        os.chdir(user)
        world([*cmd, "--out", "."], 2)
        os.chdir(tmp_path)


def _export(tflite: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> Path:
    code, err = run_cli(["export-c", str(tflite), "--out", str(out), "-q", *extra], capsys)
    assert code == 0, err
    return out


def test_mcu_test_json_never_overwrites_the_export(
    tflite_in: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], world: Check
) -> None:
    d = _export(tflite_in, tmp_path / "c", capsys, "--test-vectors", "2")
    source = sorted((d / "standalone").glob("*.c"))[0]
    for target in (d / "export.json", d / "model.tflite", source, "c/./export.json"):
        world(["mcu-test", str(d), "--board", "mps2-an386", "--json", str(target)], 2)


@pytest.mark.parametrize("edit", ["weight", "scratch", "added"])
def test_mcu_test_refuses_edited_sources(
    tflite_in: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: str
) -> None:
    d = _export(tflite_in, tmp_path / "c", capsys, "--test-vectors", "2")
    if edit == "weight":
        w = sorted((d / "standalone").glob("*_weights.c"))[0]
        text = w.read_text()
        i = text.index("{", text.index("=")) + 1
        j = next(k for k in range(i, len(text)) if text[k].isdigit())
        w.write_text(text[:j] + str((int(text[j]) + 1) % 10) + text[j + 1 :])
        want = w.relative_to(d).as_posix() + " modified"
    elif edit == "scratch":
        h = d / "standalone" / "lenet.h"
        text = h.read_text()
        h.write_text(text.replace("#define LENET_SCRATCH_SIZE", "#define LENET_SCRATCH_SIZE 16 //"))
        want = "standalone/lenet.h modified"
    else:
        (d / "standalone" / "extra.c").write_text("int lenet_extra;\n")
        want = "standalone/extra.c added"
    code, err = run_cli(["mcu-test", str(d), "--board", "mps2-an386"], capsys)
    assert code == 1, err
    assert err.startswith("error: ") and want in err and "--allow-modified" in err


# --------------------------------------------------------------------------------------------
# Hostile names in generated files


def test_hostile_model_name_cannot_run_commands(
    int8_model: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "m\n$(shell touch PWNED)\nall:;touch PWNED2 \\\n*.tflite"  # no '/' in a name
    model = tmp_path / name
    model.write_bytes(int8_model().read_bytes())
    out = _export(model, tmp_path / "c", capsys, "--test-vectors", "2")
    seen = 0
    for p in out.rglob("*"):
        if p.is_file() and p.suffix in (".c", ".h", ".cc", ""):
            for line in p.read_text(errors="replace").splitlines():
                if "PWNED" in line:  # the name only ever stands inside a one-line comment
                    seen += 1
                    assert line.startswith(("#", " *", "//")), (p, line)
                    assert "*/" not in line and not line.endswith("\\"), (p, line)
    assert seen > 0
    subprocess.run(["make", "-s", "-C", str(out / "test"), "test"], check=True, capture_output=True)
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))


@pytest.mark.parametrize(
    "prefix", ["stdint", "stdio", "stddef", "arm_acle", "immintrin", "Arduino"]
)
def test_prefix_that_hides_a_system_header_is_refused(
    tflite_in: Path, tmp_path: Path, world: Check, prefix: str
) -> None:
    err = world(["export-c", str(tflite_in), "--out", str(tmp_path / "c"), "--prefix", prefix], 2)
    assert "hides the system header" in err


def test_report_never_overwrites_what_it_reports_on(
    trained_model: Callable[..., Path], tmp_path: Path, world: Check
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.keras", "train.json"):
        (run / name).write_bytes((trained_model() / name).read_bytes())
    (run / "verify.json").write_text('{"tool": "lenet-edge 0.1.0"}\n')
    (tmp_path / "alias.html").symlink_to(run / "train.json")
    for target in ("run/model.keras", "run/train.json", "run/../run/model.keras", "alias.html"):
        err = world(["report", "run", "--out", target], 2)
        assert "would overwrite the input" in err
    world(["report", "run", "--out", str(user_folder(tmp_path))], 2)


# --------------------------------------------------------------------------------------------
# A run folder always describes the model it holds


@pytest.mark.parametrize("where", ["test evaluation", "curves"])
def test_train_interrupted_after_the_last_epoch_leaves_a_consistent_folder(
    mnist: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Ctrl-C after the last epoch (during the test evaluation or the plotting) used to leave
    the new model.keras beside the previous run's train.json and curves."""
    import json

    from lenet_edge import train as train_mod
    from lenet_edge.fsutil import sha256_file
    from lenet_edge.model import LeNetConfig

    run = tmp_path / "run"
    run.mkdir()
    (run / "train.json").write_text('{"tool": "lenet-edge 0.1.0", "model_sha256": "old"}\n')
    (run / "training_curves.png").write_bytes(b"old curves")
    (run / "model.keras").write_bytes(b"old model")

    def interrupt(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    if where == "curves":
        monkeypatch.setattr(train_mod, "_save_curves", interrupt)
    else:
        keras = train_mod.tfenv.keras()
        monkeypatch.setattr(keras.Model, "predict", interrupt)
    cfg = train_mod.TrainConfig(epochs=1, limit=2000, augment=False, batch_size=128)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(mnist, LeNetConfig.resolve("seed"), cfg, run, quiet=True)
    record = json.loads((run / "train.json").read_text())
    assert record["model_sha256"] == sha256_file(run / "model.keras")
    assert record["interrupted"] is True and record["test_accuracy"] is None
    assert not (run / "training_curves.png").exists()  # the old curves described another model


def test_comment_text_keeps_every_name_inside_its_comment() -> None:
    from firmware_export.csyntax import banner, comment_text

    for hostile in ("a\nb", "x */ y", "/* z", "end\\", "tri??/", "nul\x00", "é", "\r\n$(shell id)"):
        safe = comment_text(hostile)
        assert safe.isascii() and safe.isprintable(), safe
        assert "*/" not in safe and "/*" not in safe and not safe.endswith("\\")
        assert "??" not in safe
    text = banner(["Source model: m\n$(shell touch X)"], style="hash")
    assert text.count("\n") == 0 and text.startswith("# ")


def test_predict_json_never_overwrites_the_model_or_a_picture(
    tflite_in: Path, tmp_path: Path, world: Check
) -> None:
    from PIL import Image

    picture = tmp_path / "digit.png"
    Image.new("L", (28, 28), 0).save(picture)
    (tmp_path / "alias.json").symlink_to(picture)
    for target in (str(tflite_in), str(picture), "alias.json", "run/../digit.png"):
        err = world(["predict", str(tflite_in), str(picture), "--json", target], 2)
        assert "would overwrite" in err
