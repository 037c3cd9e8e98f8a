"""``lenet-edge package DIR --format cmake|arduino|wasm|all``: add build formats to an export."""

from __future__ import annotations

from pathlib import Path

import click

from firmware_export.package import FORMATS
from lenet_edge.commands._common import quiet_option


@click.command("package")
@click.argument("export_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice([*FORMATS, "all"]),
    help="The build format to add as DIR/<format>/; 'all' writes every format this "
    "installation provides.",
)
@quiet_option
def command(export_dir: Path, fmt: str, quiet: bool) -> None:
    """Add a build format to DIR, an export-c output: DIR/cmake/ (a CMake library target and
    an arm-none-eabi toolchain file), DIR/arduino/<Name>/ (an Arduino library with an
    example sketch) or DIR/wasm/.

    DIR must be the export that export-c wrote (every file as export.json lists it). Each
    format folder is written whole or not at all and replaces only a previous output of this
    command (recognised by its package.json); export-c leaves them alone only until it
    rewrites DIR.
    """
    from firmware_export import __version__, package
    from firmware_export.csyntax import check_prefix
    from firmware_export.digest import sha256_file
    from firmware_export.errors import FirmwareExportError
    from firmware_export.exportdir import (
        PACKAGE_RECORD,
        export_changes,
        read_package_record,
        summarize_changes,
    )
    from firmware_export.mcu import McuError, read_export
    from lenet_edge.errors import LenetEdgeError
    from lenet_edge.fsutil import OutputRefused, atomic_dir, check_output_dir, json_bytes

    try:
        export = read_export(export_dir)
        check_prefix(export.prefix)  # it names files, folders and CMake targets
    except (McuError, FirmwareExportError) as exc:
        raise package.PackageUsageError(str(exc)) from None
    changes = export_changes(export.directory, export.meta)
    if changes:
        raise package.PackageUsageError(
            f"{export_dir} is not the export that export-c wrote "
            f"({summarize_changes(changes)}; SHA-256 from "
            "export.json and package.json); re-run `lenet-edge export-c`, then package"
        )
    if fmt == "all":
        names = package.available()
        if not names:
            raise package.PackageUsageError("no package format is installed")
    else:
        if package.writer(fmt) is None:
            raise package.PackageUsageError(
                f"--format {fmt} is not available yet in this installation "
                f"(firmware_export.package.{fmt} is missing); available: "
                f"{', '.join(package.available()) or 'none'}"
            )
        names = [fmt]
    # Every folder is checked before any is written: a foreign one stops the whole command.
    for name in names:
        dest = export.directory / name
        if dest.is_dir() and any(dest.iterdir()) and read_package_record(dest) is None:
            raise OutputRefused(
                f"{dest} holds files that `lenet-edge package` did not write (no "
                f"{PACKAGE_RECORD} of it); move that folder out of the export, then package again"
            )
        check_output_dir(dest, command="package", record=PACKAGE_RECORD, option="folder")
    export_sha = sha256_file(export.directory / "export.json")
    written = []
    for name in names:
        write = package.writer(name)
        assert write is not None
        dest = export.directory / name
        try:
            with atomic_dir(dest, command="package", record=PACKAGE_RECORD) as tmp:
                write(export.directory, tmp, dict(export.meta))
                files = {
                    p.relative_to(tmp).as_posix(): sha256_file(p)
                    for p in sorted(tmp.rglob("*"))
                    if p.is_file()
                }
                record = {
                    "tool": f"lenet-edge {__version__}",
                    "command": f"lenet-edge package DIR --format {name}",
                    "format": name,
                    "prefix": export.prefix,
                    "export_json_sha256": export_sha,
                    "files": files,
                }
                (tmp / PACKAGE_RECORD).write_bytes(json_bytes(record))
                tops = sorted({rel.split("/", 1)[0] for rel in files if "/" in rel})
        except OSError as exc:
            raise LenetEdgeError(
                f"cannot write {dest}: {exc.strerror or exc}; {name} was not written"
            ) from None
        where = dest / tops[0] if name == "arduino" and len(tops) == 1 else dest
        written.append(f"{name} -> {where}")
    skipped = [n for n in FORMATS if n not in names] if fmt == "all" else []
    if not quiet:
        tail = f" (not available here: {', '.join(skipped)})" if skipped else ""
        click.echo(f"packaged {export.directory}: {'; '.join(written)}{tail}")
