"""Start the pristine forkserver before any test can lower this process's limits."""

from tests.support import pristine

pristine.start()
