from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0010_preferences_instructions_theme"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="truncated",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="message",
            name="frames",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
