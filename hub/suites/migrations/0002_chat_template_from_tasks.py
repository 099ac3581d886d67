from django.db import migrations


class Migration(migrations.Migration):
    # whether every task applies the chat template is read from the tasks themselves
    dependencies = [("suites", "0001_initial")]

    operations = [migrations.RemoveField(model_name="suite", name="chat_template")]
