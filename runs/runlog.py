"""The training log: human-readable lines and one JSON record per epoch."""
import json
import os

from utils import atomic_write

TEXT_LOG = 'log.txt'  # appended to
JSON_LOG = 'log.jsonl'  # rewritten atomically on resume

class RunLog:
    """Human-readable lines in <output>/log.txt, one JSON object per epoch in
    <output>/log.jsonl; rank 0 only; appended to on resume."""

    def __init__(self, output, enabled=True):
        self.enabled = enabled
        self.text_path = os.path.join(output, TEXT_LOG)
        self.json_path = os.path.join(output, JSON_LOG)
        if enabled:
            os.makedirs(output, exist_ok=True)

    def write(self, line):
        if not self.enabled:
            return
        print(line, flush=True)
        with open(self.text_path, 'a', encoding='utf-8') as handle:
            handle.write(line + '\n')

    def write_json(self, record):
        if not self.enabled:
            return
        with open(self.json_path, 'a', encoding='utf-8') as handle:
            handle.write(json.dumps(record, sort_keys=True) + '\n')

    def drop_epochs_from(self, epoch):
        """Resuming at `epoch`: keep only the log.jsonl records of earlier
        epochs. A run stopped after logging an epoch but before saving its
        checkpoint re-runs that epoch, which would otherwise be logged twice;
        a line torn by a crash goes too."""
        if not self.enabled or not os.path.exists(self.json_path):
            return
        kept = []
        with open(self.json_path, 'r', encoding='utf-8') as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get('epoch'), int) and record['epoch'] < epoch:
                    kept.append(line.rstrip('\n') + '\n')
        with atomic_write(self.json_path, 'w') as handle:
            handle.write(''.join(kept))
