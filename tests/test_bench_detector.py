"""tools/bench_detector.py on the narrow network: the report describes real
extractions (proposals, kept regions, stage times) and is saved as JSON."""
import json

import tiny_detector
from detection import detector
from tools import bench_detector


def test_report_describes_real_extractions(tmp_path, monkeypatch):
    monkeypatch.setattr(detector, 'ARCHITECTURE', tiny_detector.TINY)
    report = bench_detector.main(['--num_images', '2', '--json', str(tmp_path / 'bench.json')])
    assert report['images'] == 2 and list(report['stage_seconds_median']) == list(bench_detector.STAGES)
    assert all(0 < count <= 300 for count in report['proposals'])
    assert all(10 <= kept <= 100 for kept in report['regions'])
    assert all(seconds > 0 for seconds in report['seconds_per_image'])
    assert json.loads((tmp_path / 'bench.json').read_text())['seconds_per_image'] == report['seconds_per_image']
