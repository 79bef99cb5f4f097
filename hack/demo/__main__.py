"""python -m demo [--keep]: see demo/story.py."""

from .story import main

raise SystemExit(main())
