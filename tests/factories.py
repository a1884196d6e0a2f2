"""factory_boy factories for every model tests build."""

import factory

from accounts.models import Role, User
from devices.models import Device, DeviceGroup, DeviceState, HardwareModel, SavedFilter, Site, Tag


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")
    role = Role.VIEWER
    password = factory.django.Password("correct-horse-battery")


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site

    name = factory.Sequence(lambda n: f"Site {n}")
    timezone = "Europe/Berlin"


class HardwareModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = HardwareModel

    name = factory.Sequence(lambda n: f"cam-hw-{n}")
    cpu_arch = "arm64"
    accelerator = "npu"
    ram_mb = 2048


class DeviceGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeviceGroup

    name = factory.Sequence(lambda n: f"group-{n}")


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag

    name = factory.Sequence(lambda n: f"tag-{n}")


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Device
        skip_postgeneration_save = True

    device_id = factory.Sequence(lambda n: f"cam-{n:06d}")
    name = factory.Sequence(lambda n: f"Camera {n}")
    serial = factory.Sequence(lambda n: f"SN{n:08d}")
    site = factory.SubFactory(SiteFactory)
    hardware_model = factory.SubFactory(HardwareModelFactory)
    state = DeviceState.ACTIVE

    @factory.post_generation
    def tags(self, create, extracted, **kwargs):
        if create and extracted:
            self.tags.set(extracted)

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.set(extracted)


class SavedFilterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SavedFilter

    name = factory.Sequence(lambda n: f"filter-{n}")
    criteria = factory.LazyFunction(dict)
