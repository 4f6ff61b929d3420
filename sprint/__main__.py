import sys

from sprint.pipeline.cli import main

sys.exit(main())
