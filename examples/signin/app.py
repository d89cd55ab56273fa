# Sign in with gatehouse: a web app in ten lines (pip install authlib requests).
import http.server, os, secrets
from authlib.integrations.requests_client import OAuth2Session
GW, PORT = os.environ.get("GATEHOUSE", "http://127.0.0.1:8000"), int(os.environ.get("PORT", "5000"))
app = OAuth2Session(os.environ["CLIENT_ID"], scope="openid profile", redirect_uri=f"http://127.0.0.1:{PORT}/callback", code_challenge_method="S256")
url, state = app.create_authorization_url(GW + "/oauth/authorize", code_verifier=(verifier := secrets.token_urlsafe(48)))
class App(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # "/" sends you to sign in; "/callback" gets the tokens and says who you are
        if not self.path.startswith("/callback"): self.send_response(303); self.send_header("Location", url); return self.end_headers()
        app.fetch_token(GW + "/api/oauth/token", authorization_response=f"http://127.0.0.1:{PORT}{self.path}", state=state, code_verifier=verifier)
        self.send_response(200); self.end_headers(); self.wfile.write(b"Hello, " + app.get(GW + "/oauth/userinfo").json()["preferred_username"].encode())
http.server.HTTPServer(("127.0.0.1", PORT), App).serve_forever()
