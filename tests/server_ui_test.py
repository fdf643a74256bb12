#!/usr/bin/env python3
"""server_ui_test.py HEARTH MODEL ARTIFACT_DIR

Drives the chat page that `hearth serve` serves at / in headless Chromium, as
a user would: the model name in the header, settings, a streamed reply, Stop
in the middle of a long reply, and a reply after that. Writes
ARTIFACT_DIR/chat_page.png (a screenshot at the end) and ARTIFACT_DIR/server.log.

The model is small and weak, so replies are checked for being there and for
arriving in pieces, never for what they say. Exits 77 (CTest's "skipped")
when selenium, Chromium, chromedriver or the model file is missing.
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
SKIPPED = 77

# Installed in the page after it loads: records the body of every fetch, each
# change of body[data-state], and for each assistant message the successive
# lengths of its text, so that streaming can be told from one late block.
HOOKS_JS = """
window.__t = {bodies: [], states: [], lens: []};
const realFetch = window.fetch;
window.fetch = (url, init) => {
  if (init && init.body) window.__t.bodies.push(init.body);
  return realFetch(url, init);
};
new MutationObserver(() => {
  const s = document.body.dataset.state;
  if (window.__t.states[window.__t.states.length - 1] !== s) window.__t.states.push(s);
}).observe(document.body, {attributes: true, attributeFilter: ['data-state']});
new MutationObserver(() => {
  const all = document.querySelectorAll('.message.assistant .content');
  if (!all.length) return;
  const i = all.length - 1, n = all[i].textContent.length;
  const lens = window.__t.lens[i] || (window.__t.lens[i] = []);
  if (lens[lens.length - 1] !== n) lens.push(n);
}).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
"""

# The page's markdown renderer on a fixed hostile text: the model's output
# cannot be chosen, so the rendering is checked here, not on a reply.
MARKDOWN_JS = r"""
if (typeof renderMarkdown !== 'function') return null;
const sample = 'Hi **bold**, *it* and `a<b>`\n\n```c\nint x = 1 < 2; // <script>window.__xss=1</script>\n```\n\n' +
  '- one\n- <img src=x onerror="window.__xss=1">\n\nopen:\n```\nstill code';
const box = document.createElement('div');
box.append(renderMarkdown(sample));
const texts = (css) => [...box.querySelectorAll(css)].map(n => n.textContent);
return {strong: texts('p strong'), em: texts('p em'), code: texts('p code'), pre: texts('pre code'),
        li: texts('ul li'), unsafe: box.querySelectorAll('img, script').length, xss: !!window.__xss};
"""
MARKDOWN_EXPECTED = {
    'strong': ['bold'], 'em': ['it'], 'code': ['a<b>'],
    'pre': ['int x = 1 < 2; // <script>window.__xss=1</script>', 'still code'],
    'li': ['one', '<img src=x onerror="window.__xss=1">'], 'unsafe': 0, 'xss': False,
}


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, detail=''):
        if ok:
            self.passed += 1
            print(f'ok: {what}')
        else:
            self.failed += 1
            print(f'FAIL: {what}' + (f': {detail}' if detail else ''))
        return ok


class Abort(Exception):
    """A step failed that the following steps depend on."""


def skip(why):
    print(f'SKIP: {why}')
    sys.exit(SKIPPED)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def wait_healthy(base, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f'the server exited with status {proc.returncode}'
        try:
            if http_get(base + '/health', timeout=2)[0] == 200:
                return None
        except OSError:
            pass
        time.sleep(0.2)
    return f'GET /health gave no 200 within {timeout} s'


def cancelled_requests(base):
    """The server's count of requests whose client left, or None without one."""
    try:
        text = http_get(base + '/metrics')[1].decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith('hearth_requests_cancelled_total '):
            return float(line.split()[1])
    return None


def run_page(driver, base, c, wait_for):
    from selenium.webdriver.common.by import By

    def find(css):
        return driver.find_element(By.CSS_SELECTOR, css)

    def state():
        return driver.execute_script('return document.body.dataset.state')

    def set_field(css, text):
        el = find(css)
        el.clear()
        el.send_keys(text)

    def assistant_texts():
        return driver.execute_script(
            "return [...document.querySelectorAll('.message.assistant')].map(m => "
            "[m.querySelector('.content').textContent, m.dataset.finish || '', "
            "(m.querySelector('.error') || {}).textContent || '', m.querySelector('.stats').textContent])")

    def send(text):
        n = len(driver.execute_script('return window.__t.states'))
        set_field('#input', text)
        find('#send').click()
        return n

    def wait_reply(states_before, what, timeout=120):
        # The recorded transitions, not a poll of the state, so that a reply
        # too quick to be seen streaming still counts as having streamed.
        ok = wait_for(lambda d: 'streaming' in d.execute_script('return window.__t.states')[states_before:]
                      and state() == 'idle', timeout)
        if not c.check(ok, f'{what}: state goes streaming, then idle', f'states {driver.execute_script("return window.__t.states")}'):
            raise Abort()

    driver.get(base + '/')
    driver.execute_script(HOOKS_JS)
    model_id = json.loads(http_get(base + '/v1/models')[1])['data'][0]['id']
    c.check(wait_for(lambda d: find('#model').text == model_id, 10),
            'the header shows the model from /v1/models', f'{find("#model").text!r}, expected {model_id!r}')
    c.check(state() == 'idle', 'the page starts idle', repr(state()))
    rendered = driver.execute_script(MARKDOWN_JS)
    c.check(rendered == MARKDOWN_EXPECTED, 'markdown: code blocks, inline code, bold, italic, lists; markup stays text',
            f'{rendered}')

    # Settings: system prompt and temperature 0 (the settings pane may be folded).
    if not find('#system').is_displayed():
        find('#toggle-settings').click()
    system = 'You are a helpful assistant. Answer in one short sentence.'
    set_field('#system', system)
    set_field('#temperature', '0')
    set_field('#max-tokens', '96')   # a weak model at temperature 0 may not stop by itself

    # 1. A reply streams into an assistant bubble.
    question = 'Write one sentence about the sea.'
    n = send(question)
    wait_reply(n, 'first message')
    users = driver.execute_script("return [...document.querySelectorAll('.message.user .content')].map(m => m.textContent)")
    c.check(len(users) == 1 and question in users[0], 'one user message with the question', repr(users))
    replies = assistant_texts()
    c.check(len(replies) == 1 and replies[0][0].strip(), 'one assistant message with text', repr(replies))
    if replies:
        c.check(not replies[0][2] and replies[0][1] in ('stop', 'length'), 'the reply ended without error',
                f'finish {replies[0][1]!r}, error {replies[0][2]!r}')
        c.check('token' in replies[0][3], 'a stats line with the token count', repr(replies[0][3]))
    if not replies or replies[0][2]:
        raise Abort()   # the server refuses chat requests (no chat template?): the rest would only wait
    lens = driver.execute_script('return window.__t.lens[0] || []')
    c.check(len([x for x in lens if x > 0]) >= 2, 'the reply grew in more than one step (streamed)', f'lengths {lens}')
    body = json.loads(driver.execute_script('return window.__t.bodies[0]'))
    c.check(body.get('stream') is True and body.get('temperature') == 0, 'the request streams at temperature 0',
            json.dumps(body)[:300])
    c.check(body['messages'][0] == {'role': 'system', 'content': system} and body['messages'][-1]['content'] == question,
            'the request has the system prompt first and the question last', json.dumps(body['messages'])[:300])

    # 2. Stop a long reply part way: the part stays, the page goes idle.
    # A small model ends early unless asked for length, and the first system
    # prompt asked for one sentence.
    set_field('#system', 'You are a storyteller. Your answers are long and detailed.')
    set_field('#max-tokens', '1500')
    n = send('Write a long story about a lighthouse keeper and the sea, in many paragraphs.')
    started = wait_for(lambda d: state() == 'streaming' and len(assistant_texts()) == 2 and assistant_texts()[1][0].strip(), 60)
    if not c.check(started, 'the long reply starts streaming', f'state {state()!r}, replies {assistant_texts()!r}'):
        raise Abort()
    if not c.check(find('#stop').is_displayed(), 'Stop is shown while the reply streams',
                   f'state {state()!r}: the reply ended before Stop could be clicked'):
        raise Abort()
    find('#stop').click()
    if not c.check(wait_for(lambda d: state() == 'idle', 10), 'Stop returns the page to idle', repr(state())):
        raise Abort()
    replies = assistant_texts()
    c.check(len(replies) == 2 and replies[1][0].strip() and replies[1][1] == 'stopped',
            'the stopped reply keeps its partial text and says it was stopped', repr(replies[-1:]))
    c.check(not find('#stop').is_displayed() and find('#send').is_displayed(), 'Stop hides and Send returns')
    cancelled = wait_for(lambda d: cancelled_requests(base) != 0, 5)
    if cancelled_requests(base) is None:
        print('note: no hearth_requests_cancelled_total in /metrics; not checking that Stop reached the server')
    else:
        c.check(cancelled, 'Stop cancels the request on the server (/metrics counts it)')

    # 3. The page still works after a stop, and the partial reply is history.
    set_field('#max-tokens', '40')
    hostile = 'Say hello to <b>me</b> & <img src=x onerror="window.__xss=1">.'
    n = send(hostile)
    wait_reply(n, 'message after stop')
    replies = assistant_texts()
    c.check(len(replies) == 3 and replies[2][0].strip() and not replies[2][2], 'a reply after the stop', repr(replies[-1:]))
    body = json.loads(driver.execute_script('return window.__t.bodies[2]'))
    roles = [m['role'] for m in body['messages']]
    c.check(roles == ['system', 'user', 'assistant', 'user', 'assistant', 'user'] and body.get('max_tokens') == 40,
            'the third request carries the whole conversation, partial reply included', f'{roles}, {body.get("max_tokens")}')
    users = driver.execute_script("return [...document.querySelectorAll('.message.user .content')].map(m => m.textContent)")
    html_ok = driver.execute_script("return !document.querySelector('#messages img, #messages .message.user b') && !window.__xss")
    c.check(users[-1].strip() == hostile and html_ok, 'markup in a message is shown as text', repr(users[-1:]))


def main():
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    hearth, model, artifacts = sys.argv[1:]
    try:
        from selenium import webdriver
        from selenium.common.exceptions import TimeoutException, WebDriverException
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        skip('the Python package selenium is not installed (pip install selenium)')
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            skip(f'{path} is missing (Debian: apt install chromium chromium-driver)')
    if not os.path.isfile(model):
        skip(f'no model file at {model} (scripts/setup.sh fetches it)')
    os.makedirs(artifacts, exist_ok=True)

    c = Checks()
    port = free_port()
    base = f'http://127.0.0.1:{port}'
    log_path = os.path.join(artifacts, 'server.log')
    cmd = [hearth, 'serve', '-m', model, '--host', '127.0.0.1', '--port', str(port), '--parallel', '2', '-c', '2048']
    driver = None
    with open(log_path, 'wb') as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        problem = wait_healthy(base, server, 60)
        if not c.check(problem is None, 'the server answers /health', problem or ''):
            raise Abort()

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--window-size=1200,900'):
            options.add_argument(arg)
        options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)

        def wait_for(cond, timeout):
            try:
                WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: cond(d))
                return True
            except TimeoutException:
                return False

        run_page(driver, base, c, wait_for)

        # Chromium reports script errors and CSP violations on the console;
        # a missing favicon is not the page's fault.
        errors = [e['message'] for e in driver.get_log('browser')
                  if e['level'] == 'SEVERE' and 'favicon' not in e['message']]
        c.check(not errors, 'no errors on the browser console', '; '.join(errors)[:600])
    except Abort:
        pass
    except WebDriverException as e:
        c.check(False, 'the browser session', str(e).splitlines()[0] if str(e) else repr(e))
    finally:
        if driver:
            try:
                shot = os.path.join(artifacts, 'chat_page.png')
                driver.save_screenshot(shot)
                print(f'screenshot: {shot}')
            except WebDriverException as e:
                print(f'no screenshot: {e}')
            driver.quit()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    if c.failed:
        with open(log_path, 'rb') as f:
            tail = f.read()[-3000:].decode(errors='replace')
        print(f'--- the last of {log_path} ---\n{tail}')
    print(f'{c.passed} passed, {c.failed} failed')
    return 1 if c.failed else 0


if __name__ == '__main__':
    sys.exit(main())
