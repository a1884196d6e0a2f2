from django.core.management.base import BaseCommand

from devices.demo import demo_seed


class Command(BaseCommand):
    help = "Seed a small demo fleet (sites, hardware models, groups, devices) if none exists."

    def add_arguments(self, parser):
        parser.add_argument("--devices-per-site", type=int, default=4)

    def handle(self, *args, devices_per_site: int, **options):
        created = demo_seed(devices_per_site=devices_per_site)
        self.stdout.write("demo fleet seeded" if created else "a fleet exists already; nothing seeded")
