"""Run a training script in another process and press Ctrl-C (SIGINT) at moments it announces, for the interrupt tests.

No verdict depends on the machine's speed: the script says when it is ready for the signal (and waits for it), and
every wait here is bounded by `HANG`, a limit that only a hung process reaches."""
import os, queue, signal, subprocess, sys, threading

HANG = 300   # seconds without a line from the script: it hangs

class Script:
    "`script` (Python source) run in a new interpreter with `args`; its stdout read line by line, each wait bounded."
    def __init__(self, tmp_path, script:str, *args):
        path = tmp_path / 'train.py'; path.write_text(script)
        self.err_path = tmp_path / 'stderr.txt'   # a file, not a pipe: a chatty stderr cannot block the script
        with open(self.err_path, 'w') as err:
            self.proc = subprocess.Popen([sys.executable, str(path), *map(str, args)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, text=True,
                                         env={**os.environ, 'OMP_NUM_THREADS': '1'})
        self._lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def __enter__(self): return self
    def __exit__(self, *exc):   # a failed test leaves no script running
        if self.proc.poll() is None: self.proc.kill(); self.proc.wait()

    def _read(self):
        for line in self.proc.stdout: self._lines.put(line.rstrip('\n'))
        self._lines.put(None)   # end of output

    def stderr(self) -> str: return self.err_path.read_text()[-3000:]

    def readline(self) -> str:
        "The script's next line of output; fails if it ended or said nothing for `HANG` seconds."
        try: line = self._lines.get(timeout=HANG)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError(f"the script said nothing for {HANG} s: killed\n{self.stderr()}") from None
        assert line is not None, f"the script ended early (exit status {self.proc.wait()}):\n{self.stderr()}"
        return line

    def send(self, line:str):
        self.proc.stdin.write(line + '\n'); self.proc.stdin.flush()

    def interrupt(self): self.proc.send_signal(signal.SIGINT)

    def finish(self) -> list[str]:
        "Wait for the script to end (it must exit 0); the lines of output not read yet."
        self.proc.stdin.close()
        try: self.proc.wait(timeout=HANG)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the script did not end within {HANG} s: killed\n{self.stderr()}") from None
        assert self.proc.returncode == 0, self.stderr()
        lines = []
        while (line := self._lines.get(timeout=HANG)) is not None: lines.append(line)
        return lines

def run_and_interrupt(tmp_path, script:str) -> list[str]:
    "Run `script`, send SIGINT when it prints READY (and waits for the signal); its other output lines (it must exit 0)."
    with Script(tmp_path, script) as s:
        assert s.readline() == 'READY'
        s.interrupt()
        return s.finish()
