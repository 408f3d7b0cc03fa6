"""Export a baked snapshot to the native configuration of another engine (SPEC §22).

Pure: a snapshot dict in, file texts and warnings out; nothing here reads the
machine, so the same snapshot and options always give the same bytes.

>>> result = export(snapshot, "systemd", Options(prefix="shop"))  # doctest: +SKIP
>>> sorted(result.files)                                           # doctest: +SKIP
['shop-db.service', 'shop-web.service', 'shop.target']
"""

from .report import FORMATS, ExportError, Options, Result


def export(snapshot, target, options):
    """Return the Result of exporting *snapshot* to *target* (``systemd`` or ``nomad``)."""
    if target == "systemd":
        from .systemd import export_systemd as run
    elif target == "nomad":
        from .nomad import export_nomad as run
    else:
        raise ExportError(f"unknown export format {target!r}: expected {' or '.join(FORMATS)}")
    return run(snapshot, options)


__all__ = ["FORMATS", "ExportError", "Options", "Result", "export"]
