"""Fetch the real world's checkpoint and data: atomically, verified, with provenance.

Every fetch streams into a temporary sibling of its destination and renames it into place only
after the bytes (sha256) and the contents (COCO / benchmark schema, checkpoint files) check out, so
a failed or killed job never leaves a half-written file that Snakemake would take for a finished
output. A source is an ``http(s)://`` URL, a ``file://`` URL or a local path, so the same rules run
on cluster nodes without internet once the files were copied there by hand.

Modules: ``sources`` (the catalogue of known sources), ``fetch`` (bytes from a URL or a path:
retries, content length), ``archives`` (zip members, safe unpacking), ``provenance`` (sha256
checks and the records every fetcher returns), ``files`` (one file or a set of files from a zip
or a folder), and one per fetched thing: ``benchmark``, ``coco``, ``rec``, ``images``, ``model``.
The package re-exports nothing: a download job's code inputs are the modules it imports.
"""
