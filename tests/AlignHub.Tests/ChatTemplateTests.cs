using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using AlignHub.Domain.Templates;
using Xunit;

namespace AlignHub.Tests;

/// <summary>
/// AlignHub's Jinja subset (<see cref="Jinja"/>) against <c>@huggingface/jinja</c> (npm, pinned in tests/oracles), on the
/// chat templates of real model families (tests/AlignHub.Tests/ChatTemplates, sources in SOURCES.md), each with several
/// conversations, with and without <c>add_generation_prompt</c>: the two renderings are equal character for character,
/// and where the oracle raises (roles that do not alternate), so does AlignHub.
/// </summary>
public class ChatTemplateTests
{
    static readonly string Folder = Path.Combine(AlignHubProcess.RepoRoot, "tests", "AlignHub.Tests", "ChatTemplates");
    static string Template(string name) => File.ReadAllText(Path.Combine(Folder, name + ".jinja"));

    static readonly Dictionary<string, (string Bos, string Eos)> Families = new()
    {
        ["qwen3"] = ("", "<|im_end|>"),
        ["llama3_1"] = ("<|begin_of_text|>", "<|eot_id|>"),
        ["gemma3"] = ("<bos>", "<end_of_turn>"),
        ["smollm2"] = ("", "<|im_end|>"),
        ["mistral"] = ("<s>", "</s>"),
        ["llama2"] = ("<s>", "</s>"),
        ["features"] = ("<s>", "</s>"),
    };

    static object Msg(string role, object content) => new { role, content };

    static readonly Dictionary<string, object[]> Conversations = new()
    {
        ["single user"] = [Msg("user", "What is 2+2?")],
        ["system and two turns"] = [Msg("system", "You are terse."), Msg("user", "Hi"), Msg("assistant", "Hello."), Msg("user", "Add 3 and 4.")],
        ["two turns, padded content"] = [Msg("user", "  spaced question \n"), Msg("assistant", "\n answer with spaces  "), Msg("user", "again")],
        ["unicode and quotes"] = [Msg("user", "Ünïcødé \"quoted\" {{ not a tag }} 你好"), Msg("assistant", "ok ✓")],
        ["roles do not alternate"] = [Msg("user", "one"), Msg("user", "two")],
    };

    [Fact]
    public async Task Real_chat_templates_render_as_huggingface_jinja_renders_them()
    {
        var cases = new List<(string Label, string Template, JsonObject Vars)>();
        foreach (var (family, (bos, eos)) in Families)
        {
            var conversations = Conversations.ToList();
            if (family == "gemma3") conversations.Add(new("content parts", [Msg("user", new object[] { new { type = "text", text = " parts " }, new { type = "image" } }), Msg("assistant", "seen")]));
            if (family == "qwen3")
            {
                conversations.Add(new("thinking", [Msg("user", "Think"), Msg("assistant", "<think>\nstep 1\n</think>\n\nanswer"), Msg("user", "More")]));
                conversations.Add(new("thinking last", [Msg("user", "Think"), Msg("assistant", "<think>\nreasoning\n</think>\n\nfinal")]));
                conversations.Add(new("tool reply", [Msg("user", "Weather?"), Msg("assistant", "calling"), Msg("tool", "{\"t\": 21}"), Msg("tool", "{\"t\": 22}")]));
            }
            foreach (var (name, messages) in conversations)
                foreach (var agp in new[] { false, true })
                {
                    var vars = new JsonObject
                    {
                        ["messages"] = JsonSerializer.SerializeToNode(messages), ["add_generation_prompt"] = agp,
                        ["bos_token"] = bos, ["eos_token"] = eos,
                    };
                    cases.Add(($"{family} / {name} / add_generation_prompt={agp}", Template(family), vars));
                }
        }
        // Qwen3's tools block and its thinking switch.
        var tools = JsonNode.Parse("""[{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]""");
        cases.Add(("qwen3 / tools", Template("qwen3"), new JsonObject
        {
            ["messages"] = JsonSerializer.SerializeToNode(new[] { Msg("system", "Be useful."), Msg("user", "Weather in Paris?") }), ["tools"] = tools, ["add_generation_prompt"] = true,
        }));
        cases.Add(("qwen3 / enable_thinking=false", Template("qwen3"), new JsonObject
        {
            ["messages"] = JsonSerializer.SerializeToNode(new[] { Msg("user", "Quick") }), ["add_generation_prompt"] = true, ["enable_thinking"] = false,
        }));

        var request = new JsonArray(cases.Select(c => (JsonNode)new JsonObject { ["template"] = c.Template, ["vars"] = c.Vars.DeepClone() }).ToArray());
        var (code, output) = await Oracles.NodeAsync("jinja.mjs", request.ToJsonString());
        Assert.True(code == 0, output);
        var expected = JsonNode.Parse(output)!.AsArray();
        Assert.Equal(cases.Count, expected.Count);

        var errors = new List<string>();
        for (int i = 0; i < cases.Count; i++)
        {
            var (label, template, vars) = cases[i];
            var variables = ((JsonObject)vars).ToDictionary(kv => kv.Key, kv => Jinja.FromJson(JsonSerializer.SerializeToElement(kv.Value)));
            var oracle = expected[i]!.AsObject();
            if (oracle.TryGetPropertyValue("error", out var error))
            {
                errors.Add(label[..label.LastIndexOf(" / ", StringComparison.Ordinal)]);
                var e = Assert.Throws<TemplateException>(() => Jinja.Render(template, variables));
                Assert.False(string.IsNullOrEmpty(e.Message), label);
                continue;
            }
            string ours;
            try { ours = Jinja.Render(template, variables); }
            catch (TemplateException e) { throw new Xunit.Sdk.XunitException($"{label}: AlignHub raised \"{e.Message}\"; @huggingface/jinja rendered:\n{oracle["output"]}"); }
            var theirs = oracle["output"]!.GetValue<string>();
            if (ours != theirs)
                throw new Xunit.Sdk.XunitException($"{label}:\n--- @huggingface/jinja\n{theirs}\n--- AlignHub\n{ours}\n--- first difference at {FirstDifference(ours, theirs)}");
        }
        // Raised in both: the alternation checks of gemma3, mistral and llama2 on the conversation that breaks it, and
        // Mistral v0.1's, which admits no system message, on the conversation that has one (each with and without add_generation_prompt).
        Assert.Equal(["gemma3 / roles do not alternate", "llama2 / roles do not alternate", "mistral / roles do not alternate", "mistral / system and two turns"],
            errors.Distinct().Order());
        Assert.Equal(8, errors.Count);
    }

    static int FirstDifference(string a, string b)
    {
        int i = 0;
        while (i < a.Length && i < b.Length && a[i] == b[i]) i++;
        return i;
    }

    /// <summary>Hand-written expectations from the templates' text, independent of either engine.</summary>
    [Fact]
    public void Llama_3_and_ChatML_renderings_follow_their_templates_rules()
    {
        var messages = Jinja.FromJson(JsonSerializer.SerializeToElement(new[] { Msg("user", " Hi "), Msg("assistant", "Hello") }));
        // Llama 3.1: BOS before the first message, each message's content trimmed, then the assistant header when asked.
        Assert.Equal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            Jinja.Render(Template("llama3_1"), new Dictionary<string, object?> { ["messages"] = messages, ["add_generation_prompt"] = true, ["bos_token"] = "<|begin_of_text|>" }));
        // SmolLM2: its default system prompt, then ChatML turns with the content as given.
        Assert.Equal("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n",
            Jinja.Render(Template("smollm2"), new Dictionary<string, object?> { ["messages"] = messages, ["add_generation_prompt"] = false }));
    }

    /// <summary>
    /// The supervised mask from the model's own template: exactly the assistant's turns as each family renders them (its
    /// content and end-of-turn marker; Qwen3's empty thinking block for the final turn), everything else not trained, and the
    /// segments together are the whole rendering.
    /// </summary>
    [Theory]
    [InlineData("smollm2", "", "<|im_end|>", "Hello.<|im_end|>\n", "Seven.<|im_end|>\n")]
    [InlineData("llama3_1", "<|begin_of_text|>", "<|eot_id|>", "Hello.<|eot_id|>", "Seven.<|eot_id|>")]
    [InlineData("gemma3", "<bos>", "<end_of_turn>", "Hello.<end_of_turn>\n", "Seven.<end_of_turn>\n")]
    [InlineData("mistral", "<s>", "</s>", "Hello.</s>", "Seven.</s>")]
    [InlineData("llama2", "<s>", "</s>", " Hello. </s>", " Seven. </s>")]
    // Qwen3 renders an earlier assistant turn without the thinking block its last turn gets, so the prefixes disagree and
    // the contents are found in the whole rendering, each with the eos_token after it.
    [InlineData("qwen3", "", "<|im_end|>", "Hello.<|im_end|>", "Seven.<|im_end|>")]
    public void The_assistant_mask_covers_exactly_what_the_template_renders_for_the_assistant(string family, string bos, string eos, string first, string second)
    {
        var template = new ModelChatTemplate(Template(family), bos, eos);
        ChatMessage[] messages = [new("user", "Hi"), new("assistant", "Hello."), new("user", "Add 3 and 4."), new("assistant", "Seven.")];
        var example = template.Segments(messages);
        Assert.Equal(template.Render(messages, false), string.Concat(example.Segments.Select(x => x.Text)));
        Assert.Equal([first, second], example.Segments.Where(x => x.Trainable).Select(x => x.Text));
        // A prompt: the conversation so far and the opening of the assistant's turn.
        var prompt = template.Render(messages[..1], true);
        Assert.StartsWith(prompt, template.Render(messages[..2], false));
    }

    [Fact]
    public void Qwen3_trains_its_final_turn_with_the_thinking_block_when_the_prefixes_agree()
    {
        var template = new ModelChatTemplate(Template("qwen3"), "", "<|im_end|>");
        var example = template.Segments([new("user", "Hi"), new("assistant", "Hello.")]);
        Assert.Equal(["<think>\n\n</think>\n\nHello.<|im_end|>\n"], example.Segments.Where(x => x.Trainable).Select(x => x.Text));
    }

    [Fact]
    public void A_folder_template_comes_from_chat_template_jinja_or_tokenizer_config()
    {
        var dir = Directory.CreateTempSubdirectory("alignhub-template-").FullName;
        Assert.Null(ModelChatTemplate.FromFolder(dir));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), new JsonObject
        {
            ["chat_template"] = new JsonArray(new JsonObject { ["name"] = "tool_use", ["template"] = "tools" }, new JsonObject { ["name"] = "default", ["template"] = Template("llama3_1") }),
            ["bos_token"] = new JsonObject { ["content"] = "<|begin_of_text|>", ["special"] = true }, ["eos_token"] = "<|eot_id|>",
        }.ToJsonString());
        var t = ModelChatTemplate.FromFolder(dir)!;
        Assert.Equal(("<|begin_of_text|>", "<|eot_id|>"), (t.BosToken, t.EosToken));
        Assert.StartsWith("<|begin_of_text|><|start_header_id|>user", t.Render([new("user", "x")], true));
        File.WriteAllText(Path.Combine(dir, "chat_template.jinja"), Template("smollm2"));
        Assert.StartsWith("<|im_start|>system", ModelChatTemplate.FromFolder(dir)!.Render([new("user", "x")], true));
    }

    /// <summary>Python's Jinja, as transformers renders templates, where @huggingface/jinja prints or strips otherwise.</summary>
    [Fact]
    public void Python_semantics_where_the_oracle_differs()
    {
        var none = new Dictionary<string, object?>();
        Assert.Equal("True False None", Jinja.Render("{{ 1 == 1 }} {{ 1 == 2 }} {{ none }}", none));
        Assert.Equal("hixx|xxhi|hi", Jinja.Render("{{ 'xxhixx'.lstrip('x') }}|{{ 'xxhixx'.rstrip('x') }}|{{ 'xxhixx'.strip('x') }}", none));
        Assert.Equal("['a', 1, True] 1.0 2", Jinja.Render("{{ ['a', 1, true] }} {{ 2 / 2 }} {{ 5 // 2 }}", none));
    }

    [Fact]
    public void Generation_blocks_report_the_spans_they_render()
    {
        const string t = "{% for m in messages %}<{{ m.role }}>{% if m.role == 'assistant' %}{% generation %}{{ m.content }}</s>{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}";
        var messages = Jinja.FromJson(JsonSerializer.SerializeToElement(new[] { Msg("user", "q"), Msg("assistant", "a1"), Msg("user", "q2"), Msg("assistant", "a2") }));
        var text = Jinja.Render(t, new Dictionary<string, object?> { ["messages"] = messages }, out var spans);
        Assert.Equal("<user>q<assistant>a1</s><user>q2<assistant>a2</s>", text);
        Assert.Equal(["a1</s>", "a2</s>"], spans.Select(s => text[s.Start..s.End]));
    }

    [Fact]
    public void Bad_templates_and_raise_exception_are_template_errors_with_a_line()
    {
        var unclosed = Assert.Throws<TemplateException>(() => Jinja.Render("line one\n{% if x %}never closed", new Dictionary<string, object?>()));
        Assert.Contains("endif", unclosed.Message);
        var unknown = Assert.Throws<TemplateException>(() => Jinja.Render("a\nb\n{{ x | no_such_filter }}", new Dictionary<string, object?> { ["x"] = 1L }));
        Assert.Contains("no_such_filter", unknown.Message);
        var raised = Assert.Throws<TemplateException>(() => Jinja.Render("{{ raise_exception('roles must alternate') }}", new Dictionary<string, object?>()));
        Assert.Equal("roles must alternate", raised.Message);
        var tag = Assert.Throws<TemplateException>(() => Jinja.Render("\n\n{{ 1 + }}", new Dictionary<string, object?>()));
        Assert.StartsWith("line 3", tag.Message);
    }
}
