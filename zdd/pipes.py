"""One program's output into another's input (a shell's `a | b`), each side's error kept apart."""

import signal
import subprocess
import tempfile

from zdd.restic import last_line


def pipe(producer_argv: list[str], consumer_argv: list[str],
         producer_env: dict | None = None) -> tuple[str | None, str | None]:
    """Run both to the end: (the producer's last error line if it failed, the consumer's if it
    failed), None for a side that succeeded. A producer cut off because the consumer stopped
    reading (SIGPIPE) did not fail by itself: only the consumer's error is told then."""
    with tempfile.TemporaryFile() as producer_errors, tempfile.TemporaryFile() as consumer_output:
        producer = subprocess.Popen(producer_argv, env=producer_env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=producer_errors)
        consumer = subprocess.run(consumer_argv, stdin=producer.stdout, stdout=consumer_output, stderr=consumer_output)
        producer.stdout.close()
        producer.wait()
        cut_off = consumer.returncode != 0 and producer.returncode in (-signal.SIGPIPE, 128 + signal.SIGPIPE)
        return (None if producer.returncode == 0 or cut_off else _last_line(producer_errors),
                None if consumer.returncode == 0 else _last_line(consumer_output))


def _last_line(output) -> str:
    output.seek(0)
    return last_line(output.read().decode("utf-8", "replace"))
