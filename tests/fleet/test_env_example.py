from pathlib import Path

from django.conf import settings

from fleet.management.commands.env_example import env_variables, render


def test_env_example_lists_every_variable_settings_reads():
    committed = (Path(settings.BASE_DIR) / ".env.example").read_text()
    assert committed == render(), "run: python manage.py env_example > .env.example"


def test_env_variables_finds_names_defaults_and_comments():
    source = '# Why it exists.\nA = env.int("A_B", default=3)\nB = env.str("C", default="x")\n'
    assert env_variables(source) == [("A_B", "3", "# Why it exists."), ("C", "'x'", "")]
