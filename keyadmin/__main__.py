from keyadmin.cli.main import run

run()
