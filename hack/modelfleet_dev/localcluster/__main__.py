"""python -m modelfleet_dev.localcluster build | up | down | env | status | serve"""

from .cli import main

raise SystemExit(main())
