"""Many hosts: a release store on S3-compatible object storage and what the Ansible collection
(``ansible/`` in the repository) needs on each host.

- :mod:`hotswap.fleet.s3`: ``s3://`` URLs and object operations (boto3, the ``s3`` extra,
  imported lazily);
- :mod:`hotswap.fleet.pointer`: ``current.json``, the bucket layout;
- :mod:`hotswap.fleet.publish`: ``hotswap publish``;
- :mod:`hotswap.fleet.fetch`: an ``s3://`` reference to a verified local tarball
  (``hotswap upgrade s3://...``);
- :mod:`hotswap.fleet.follow`: ``hotswap run --follow``, fly_deploy's startup reapply.

Nothing here is imported by the supervisor: an ``s3://`` reference becomes a local tarball and
its sha256 on the caller's side, and the supervisor verifies it as any other.
"""
