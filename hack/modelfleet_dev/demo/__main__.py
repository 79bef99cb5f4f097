"""python -m modelfleet_dev.demo [--keep]: see demo/story.py."""

from .story import main

raise SystemExit(main())
