"Run a training script in another process and press Ctrl-C (SIGINT) once it says READY, for the interrupt tests."
import signal, subprocess, sys

def run_and_interrupt(tmp_path, script:str) -> list[str]:
    "Write `script`, run it, send SIGINT when it prints READY; return its other output lines (it must exit 0)."
    path = tmp_path / 'train.py'; path.write_text(script)
    proc = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == 'READY', line + proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out.splitlines()
