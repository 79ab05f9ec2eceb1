from tests.conftest import *


def test_smoke(actions, smtp):
    r = actions.signup()
    print(r.status_code, r.get_data(as_text=True)[:3000] if r.status_code != 302 else r.location)
    assert r.status_code == 302
    r = actions.activate()
    assert "Félicitations" in r.get_data(as_text=True)
    r = actions.login()
    assert r.status_code == 302, r.get_data(as_text=True)
    r = actions.client.get("/espace")
    assert "martin.dupont" in r.get_data(as_text=True)
    r = actions.logout()
    assert r.status_code == 302
    assert actions.client.get("/espace").status_code == 302
