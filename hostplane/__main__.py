from hostplane.cli import app

app(prog_name="hostplane")
