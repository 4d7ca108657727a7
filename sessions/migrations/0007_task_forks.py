import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0006_agent_endpoints_integrations"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="forked_from",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="forks",
                to="agent_sessions.task",
            ),
        ),
        migrations.AddField(
            model_name="task",
            name="forked_from_step",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
    ]
