"""The report as a person sees it: headless Chromium (Debian's `chromium`)
opens index.html from the file system at a desktop width and at a phone's
(400 px), over the DevTools protocol on a pipe (no port, no extra package).

Checked: the page loads with no failed request, no request other than
file:// ones, no script error or console error, every picture decoded, no
sideways scrolling of the whole page; a full-page screenshot of each width
is saved (into $REPORT_SCREENSHOTS when set, else the test's tmp folder).

Without chromium the test is skipped, except under CI (CI or
REPORT_BROWSER_REQUIRED set: .ci/run installs chromium), where it fails.
"""
import base64
import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_report import EVAL, photos, vqa_report  # noqa: F401  (fixtures)

import evaluate

WIDTHS = {'desktop': (1280, 900, False), 'narrow': (400, 800, True)}
TIMEOUT_S = 60


def chromium_binary():
    for name in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get('CI') or os.environ.get('REPORT_BROWSER_REQUIRED'):
        pytest.fail('chromium is not installed; the browser test must run in CI (.ci/run installs it: '
                    'apt-get install -y chromium)')
    pytest.skip('chromium is not installed (apt-get install -y chromium); CI installs it and runs this test')


class Browser:
    """Headless Chromium driven over --remote-debugging-pipe (fd 3: commands
    in, fd 4: replies and events out, JSON messages ending in NUL)."""

    def __init__(self, binary, profile):
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()

        def wire_pipes():  # in the child: the command pipe on fd 3, the reply pipe on fd 4
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)  # above 4 first: dup2 must not clobber
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.process = subprocess.Popen(
            [binary, '--headless', '--no-sandbox', '--disable-gpu', '--remote-debugging-pipe', '--no-first-run',
             '--disable-extensions', '--disable-background-networking', '--disable-sync', '--mute-audio',
             '--user-data-dir=%s' % profile, 'about:blank'],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire_pipes, close_fds=False)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.buffer = b''
        self.next_id = 0
        self.events = []

    def _read_message(self, deadline):
        while b'\0' not in self.buffer:
            if time.time() > deadline:
                raise TimeoutError('chromium did not answer in %d s' % TIMEOUT_S)
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError('chromium closed the DevTools pipe (exit %s)' % self.process.poll())
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b'\0', 1)
        return json.loads(message)

    def send(self, method, session=None, **params):
        """The result of one command; events that arrive meanwhile are kept."""
        self.next_id += 1
        message = {'id': self.next_id, 'method': method, 'params': params}
        if session:
            message['sessionId'] = session
        os.write(self.to_browser, json.dumps(message).encode() + b'\0')
        deadline = time.time() + TIMEOUT_S
        while True:
            reply = self._read_message(deadline)
            if reply.get('id') == self.next_id:
                if 'error' in reply:
                    raise RuntimeError('%s: %s' % (method, reply['error']))
                return reply['result']
            self.events.append(reply)

    def wait_for(self, method):
        deadline = time.time() + TIMEOUT_S
        while not any(event.get('method') == method for event in self.events):
            self.events.append(self._read_message(deadline))

    def close(self):
        try:
            self.send('Browser.close')
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.to_browser)
        os.close(self.from_browser)


CHECK_PAGE = '''(() => {
  const broken = Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
  return JSON.stringify({broken: broken, images: document.images.length,
                         scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
                         height: document.documentElement.scrollHeight, title: document.title});
})()'''


def render(binary, page, width, height, mobile, screenshot, profile):
    """Open `page` at `width`; returns (what CHECK_PAGE saw, problems)."""
    browser = Browser(binary, profile)
    try:
        target = browser.send('Target.createTarget', url='about:blank')['targetId']
        session = browser.send('Target.attachToTarget', targetId=target, flatten=True)['sessionId']
        for domain in ('Page', 'Runtime', 'Log', 'Network'):
            browser.send(domain + '.enable', session)
        browser.send('Emulation.setDeviceMetricsOverride', session, width=width, height=height,
                     deviceScaleFactor=1, mobile=mobile)
        browser.events.clear()
        browser.send('Page.navigate', session, url=Path(page).resolve().as_uri())
        browser.wait_for('Page.loadEventFired')
        seen = json.loads(browser.send('Runtime.evaluate', session, expression=CHECK_PAGE,
                                       returnByValue=True)['result']['value'])
        full = min(seen['height'], 16000)
        browser.send('Emulation.setDeviceMetricsOverride', session, width=width, height=full, deviceScaleFactor=1,
                     mobile=mobile)
        shot = browser.send('Page.captureScreenshot', session, format='png', captureBeyondViewport=True)
        Path(screenshot).write_bytes(base64.b64decode(shot['data']))
        problems, urls = [], {}
        for event in browser.events:
            method, params = event.get('method'), event.get('params', {})
            if method == 'Network.requestWillBeSent':
                urls[params['requestId']] = params['request']['url']
                if not params['request']['url'].startswith('file://'):
                    problems.append('request outside the folder: %s' % params['request']['url'])
            elif method == 'Network.loadingFailed':
                problems.append('failed to load (%s): %s' % (params.get('errorText'),
                                                             urls.get(params.get('requestId'))))
            elif method == 'Runtime.exceptionThrown':
                problems.append('script error: %s' % params['exceptionDetails'].get('text'))
            elif method == 'Runtime.consoleAPICalled' and params.get('type') in ('error', 'assert'):
                problems.append('console error: %s' % params.get('args'))
            elif method == 'Log.entryAdded' and params['entry'].get('level') == 'error':
                problems.append('%s: %s' % (params['entry'].get('source'), params['entry'].get('text')))
        return seen, problems
    finally:
        browser.close()


def screenshot_folder(tmp_path):
    folder = Path(os.environ.get('REPORT_SCREENSHOTS') or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_in_browser(folder, name, tmp_path):
    binary = chromium_binary()
    shots = screenshot_folder(tmp_path)
    for width_name, (width, height, mobile) in WIDTHS.items():
        shot = shots / ('report_%s_%s.png' % (name, width_name))
        seen, problems = render(binary, folder / 'index.html', width, height, mobile, shot,
                                tmp_path / ('profile_%s_%s' % (name, width_name)))
        assert not problems, '%s at %d px: %s' % (name, width, '; '.join(problems))
        assert not seen['broken'] and seen['images'] > 0, seen
        assert seen['scrollWidth'] <= seen['innerWidth'], 'the page scrolls sideways at %d px: %s' % (width, seen)
        from PIL import Image
        with Image.open(shot) as image:
            assert image.width == width and image.height >= min(seen['height'], 16000) - 1
        print('screenshot: %s' % shot)


def test_vqa_report_renders_in_chromium(vqa_report, tmp_path):  # noqa: F811
    folder, _, _ = vqa_report
    check_in_browser(folder, 'vqa', tmp_path)


def test_flickr_report_renders_in_chromium(flickr_root, tmp_path):
    chromium_binary()
    import main
    model = tmp_path / 'model'
    main.main(['--task', 'flickr', '--dataroot', flickr_root, '--output', str(model), '--epochs', '1',
               '--batch_size', '8', '--emb_dim', '8', '--num_hid', '16', '--workers', '0', '--device', 'cpu'])
    evaluate.main(['--task', 'flickr', '--dataroot', flickr_root, '--input', str(model), '--report',
                   str(tmp_path / 'report'), '--report_items', '4', '--num_hid', '16', '--workers', '0',
                   '--device', 'cpu'])
    check_in_browser(tmp_path / 'report', 'flickr', tmp_path)


def test_a_missing_picture_is_seen_by_the_browser_check(vqa_report, tmp_path):  # noqa: F811
    """The check can fail: a report with one picture removed is caught."""
    folder, _, _ = vqa_report
    broken = tmp_path / 'broken'
    shutil.copytree(folder, broken)
    victim = sorted((broken / 'pictures').glob('q*.png'))[0]
    victim.unlink()
    seen, problems = render(chromium_binary(), broken / 'index.html', 1280, 900, False, tmp_path / 'shot.png',
                            tmp_path / 'profile')
    assert any(victim.name in src for src in seen['broken'])
    assert any('failed to load' in problem or victim.name in problem for problem in problems), problems
