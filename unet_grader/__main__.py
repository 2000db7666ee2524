import sys

from unet_grader.cli import main

sys.exit(main())
