package dataplatform.kestra;

import java.util.List;

import io.kestra.core.models.property.Property;
import io.kestra.core.models.tasks.RunnableTask;
import io.kestra.core.runners.RunContext;
import io.kestra.plugin.scripts.exec.AbstractExecScript;
import io.kestra.plugin.scripts.exec.scripts.models.ScriptOutput;
import jakarta.validation.constraints.NotNull;

/**
 * Runs shell commands (with {@code /bin/sh -c}, failing on the first failing command) on the
 * task's runner, here the Process runner. Lines a command prints as
 * {@code ::{"outputs": {...}}::} become {@code outputs.<task>.vars}, as with Kestra's script
 * plugins. The engine of infra/kestra runs the flow's command tasks with this type, because
 * the python plugin is not among Kestra's published engine modules.
 *
 * <p>Unlike Kestra's script tasks, which log every stderr line at ERROR, it logs each one at
 * the level of what it is ({@link LeveledLogConsumer}), so that Spark's warnings do not read as
 * errors of a successful run.
 */
public class ShellCommands extends AbstractExecScript implements RunnableTask<ScriptOutput> {
    @NotNull
    private Property<List<String>> commands;

    private Property<String> containerImage;

    public ShellCommands() {
        super();
    }

    public Property<List<String>> getCommands() {
        return commands;
    }

    @Override
    public Property<String> getContainerImage() {
        return containerImage;
    }

    @Override
    public ScriptOutput run(RunContext runContext) throws Exception {
        return this.commands(runContext)
            .withLogConsumer(new LeveledLogConsumer(runContext))
            .withInterpreter(this.interpreter)
            .withBeforeCommands(this.beforeCommands)
            .withBeforeCommandsWithOptions(true)
            .withCommands(this.commands)
            .run();
    }
}
