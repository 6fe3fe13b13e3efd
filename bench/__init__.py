"""Benchmarks: scripts that print a table and write JSON; never timed assertions in tests.

Each measures its rows side by side in one run and reports ratios against a baseline from
the same run, with the machine's load average (other work shares small boxes).

`python -m bench.codec`  codec efficiency of our chunk planner against the Orpheus and
                         Scicom streaming decoders (same codes, same codec).
`python -m bench.proxy`  proxy capacity: the real proxy in front of a paced scripted engine
                         (bench.paced_engine), each in its own process.

Pure pieces (emitters, SNR alignment, playback maths) live apart from the scripts and are
tested in tests/test_bench.py; only the scripts read clocks or import torch.
"""
