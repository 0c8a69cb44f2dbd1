"""A small Hugging Face Hub on 127.0.0.1, serving generated repos to the real `huggingface_hub` client.

It speaks the part of the Hub's protocol that `huggingface_hub` uses to download (`local_hub.routes`),
plain HTTP or, with Xet on (`LocalHub(root, xet=True)`, or `enable_xet(repo_id)` for one repo), the
way the real Hub sends LFS files through `hf_xet`: a read token and a CAS on the same port, whose
xorbs hold uncompressed chunks (`local_hub.xet`).

Every request is counted (kinds `revision`, `tree`, `resolve`, `xet-read-token`, `reconstruction`,
`xorb`), and faults (status bursts, throttling, corrupt bodies, stalled bodies, API requests held
unanswered) can be injected on either path (`local_hub.faults`), so tests assert what went over the
wire. Bodies are sent with `sendfile` from content-addressed blobs (and xorbs) on disk: it is also
the server the benchmark measures `curl` and bare `huggingface_hub` against. The tests (`tests/`)
and the benchmark (`bench/`) both use it; it is not part of the `modal_jobs` distribution.
"""
