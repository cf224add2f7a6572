using System.Globalization;
using System.Text;
using System.Text.Json;

namespace AlignHub.Domain.Templates;

/// <summary>A template that cannot be parsed or rendered (including the template's own <c>raise_exception</c>).</summary>
public sealed class TemplateException(string message) : Exception(message);

/// <summary>
/// The subset of Jinja (jinja.palletsprojects.com/templates) that Hugging Face chat templates use, rendered as
/// transformers renders them (<c>trim_blocks</c> and <c>lstrip_blocks</c> on, no autoescape). Statements: <c>for</c>
/// (with <c>else</c>, tuple unpacking, <c>loop.*</c>, <c>break</c>/<c>continue</c>), <c>if</c>/<c>elif</c>/<c>else</c>,
/// <c>set</c> (also <c>ns.attr</c> and block sets), <c>macro</c>, <c>generation</c> (transformers' assistant-mask
/// marker, rendered as its body and reported through <see cref="Render"/>'s spans), comments and whitespace control.
/// Expressions: literals, lists, dicts, tuples, attribute/item access, slices, calls, filters, tests (<c>is</c>),
/// <c>in</c>, <c>not</c>/<c>and</c>/<c>or</c>, comparisons, arithmetic, <c>~</c>, and <c>a if b else c</c>. Values are
/// Python's: None, bool, long, double, string, lists, ordered dicts. Cross-checked in the tests against
/// <c>@huggingface/jinja</c> on real models' templates.
/// </summary>
public static class Jinja
{
    /// <summary>Renders <paramref name="template"/> with <paramref name="variables"/> (values as <see cref="FromJson"/> makes them, or CLR primitives).</summary>
    public static string Render(string template, IReadOnlyDictionary<string, object?> variables) => Render(template, variables, out _);

    /// <summary>As <see cref="Render(string, IReadOnlyDictionary{string, object?})"/>, with the output's character spans rendered inside <c>{% generation %}</c> blocks.</summary>
    public static string Render(string template, IReadOnlyDictionary<string, object?> variables, out List<(int Start, int End)> generationSpans)
    {
        var body = Parser.Parse(Lexer.Lex(template));
        var r = new Renderer();
        var scope = new Scope(null);
        foreach (var (k, v) in Renderer.Globals) scope.Vars[k] = v;
        foreach (var (k, v) in variables) scope.Vars[k] = v;
        r.Exec(body, scope);
        generationSpans = r.Spans;
        return r.Out.ToString();
    }

    /// <summary>A JSON value as a template value: objects keep their key order.</summary>
    public static object? FromJson(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => new Dict(e.EnumerateObject().Select(p => new KeyValuePair<string, object?>(p.Name, FromJson(p.Value)))),
        JsonValueKind.Array => e.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => e.TryGetInt64(out var l) ? l : e.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };

    /// <summary>An ordered mapping (Python's dict): the template's dicts, namespaces and JSON objects.</summary>
    public sealed class Dict : List<KeyValuePair<string, object?>>
    {
        public Dict() { }
        public Dict(IEnumerable<KeyValuePair<string, object?>> items) : base(items) { }
        public bool TryGet(string key, out object? value)
        {
            foreach (var kv in this) if (kv.Key == key) { value = kv.Value; return true; }
            value = null;
            return false;
        }
        public void Set(string key, object? value)
        {
            int i = FindIndex(kv => kv.Key == key);
            if (i >= 0) this[i] = new(key, value); else Add(new(key, value));
        }
    }

    /// <summary>The value of a name or attribute that does not exist: prints as nothing, is falsy, and is <c>undefined</c>.</summary>
    public sealed class Undefined { public static readonly Undefined Value = new(); public override string ToString() => ""; }

    sealed class Namespace { public readonly Dict Attrs = []; }
    sealed record Macro(string Name, List<(string Name, Expr? Default)> Params, List<Node> Body);
    delegate object? Function(List<object?> args, Dict kwargs);

    // ---------------------------------------------------------------- lexing

    enum PartKind { Text, Output, Block }
    sealed record Part(PartKind Kind, string Text, List<Tok> Tokens, int Line);
    enum TokKind { Name, Number, String, Op, End }
    sealed record Tok(TokKind Kind, string Text, object? Value = null);

    static class Lexer
    {
        public static List<Part> Lex(string src)
        {
            // keep_trailing_newline is off in Jinja: one newline at the very end of a template is dropped.
            if (src.EndsWith('\n')) src = src[..^(src.EndsWith("\r\n") ? 2 : 1)];
            var parts = new List<Part>();
            int pos = 0, line = 1;
            bool stripNext = false; // a "-" closed the last tag: the next text loses its leading whitespace
            bool trimNewline = false; // trim_blocks: the newline right after a block tag goes
            while (pos < src.Length)
            {
                int open = NextTag(src, pos);
                string text = open < 0 ? src[pos..] : src[pos..open];
                if (trimNewline) { if (text.StartsWith("\r\n")) text = text[2..]; else if (text.StartsWith('\n')) text = text[1..]; }
                if (stripNext) text = text.TrimStart();
                if (open < 0) { if (text.Length > 0) parts.Add(new Part(PartKind.Text, text, [], line)); break; }
                char kind = src[open + 1];
                int inner = open + 2;
                bool stripBefore = inner < src.Length && src[inner] == '-';
                bool plus = inner < src.Length && src[inner] == '+';
                if (stripBefore || plus) inner++;
                if (stripBefore) text = text.TrimEnd();
                else if (kind != '{' && !plus)
                {
                    // lstrip_blocks: spaces and tabs between the line's start and a block tag go.
                    int j = open;
                    while (j > 0 && src[j - 1] is ' ' or '\t') j--;
                    if (j == 0 || src[j - 1] == '\n')
                    {
                        int k = text.Length;
                        while (k > 0 && text[k - 1] is ' ' or '\t') k--;
                        text = text[..k];
                    }
                }
                if (text.Length > 0) parts.Add(new Part(PartKind.Text, text, [], line));
                line += text.Count(ch => ch == '\n');
                if (kind == '#')
                {
                    int close = src.IndexOf("#}", inner, StringComparison.Ordinal);
                    if (close < 0) throw new TemplateException($"line {line}: unclosed comment");
                    stripNext = src[close - 1] == '-';
                    trimNewline = !stripNext;
                    line += src[open..close].Count(ch => ch == '\n');
                    pos = close + 2;
                    continue;
                }
                var (tokens, end, stripAfter) = Tokens(src, inner, kind == '{' ? "}}" : "%}", line);
                line += src[open..end].Count(ch => ch == '\n');
                if (kind == '%' && tokens.Count > 1 && tokens[0].Text == "raw")
                {
                    int endraw = FindEndRaw(src, end, out int after);
                    parts.Add(new Part(PartKind.Text, src[end..endraw], [], line));
                    pos = after;
                    stripNext = false; trimNewline = true;
                    continue;
                }
                parts.Add(new Part(kind == '{' ? PartKind.Output : PartKind.Block, "", tokens, line));
                stripNext = stripAfter;
                trimNewline = kind == '%' && !stripAfter;
                pos = end;
            }
            return parts;
        }

        static int NextTag(string src, int from)
        {
            for (int i = src.IndexOf('{', from); i >= 0 && i + 1 < src.Length; i = src.IndexOf('{', i + 1))
                if (src[i + 1] is '{' or '%' or '#') return i;
            return -1;
        }

        static int FindEndRaw(string src, int from, out int after)
        {
            int i = from;
            while ((i = src.IndexOf("{%", i, StringComparison.Ordinal)) >= 0)
            {
                var (t, end, _) = Tokens(src, src[i + 2] == '-' ? i + 3 : i + 2, "%}", 0);
                if (t.Count > 0 && t[0].Text == "endraw") { after = end; return i; }
                i += 2;
            }
            throw new TemplateException("unclosed raw block");
        }

        /// <summary>The tokens of a tag's inside, up to its closing delimiter; where the tag ends and whether it closed with "-".</summary>
        static (List<Tok> Tokens, int End, bool StripAfter) Tokens(string s, int i, string close, int line)
        {
            var list = new List<Tok>();
            while (true)
            {
                while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
                if (i >= s.Length) throw new TemplateException($"line {line}: the tag is not closed with {close}");
                if (s[i] == '-' && string.CompareOrdinal(s, i + 1, close, 0, 2) == 0) { list.Add(new Tok(TokKind.End, "")); return (list, i + 3, true); }
                if (string.CompareOrdinal(s, i, close, 0, 2) == 0) { list.Add(new Tok(TokKind.End, "")); return (list, i + 2, false); }
                char c = s[i];
                if (char.IsLetter(c) || c == '_')
                {
                    int j = i;
                    while (j < s.Length && (char.IsLetterOrDigit(s[j]) || s[j] == '_')) j++;
                    list.Add(new Tok(TokKind.Name, s[i..j]));
                    i = j;
                }
                else if (char.IsDigit(c))
                {
                    int j = i;
                    while (j < s.Length && (char.IsDigit(s[j]) || s[j] == '_')) j++;
                    bool isFloat = false;
                    if (j + 1 < s.Length && s[j] == '.' && char.IsDigit(s[j + 1])) { isFloat = true; j++; while (j < s.Length && char.IsDigit(s[j])) j++; }
                    if (j < s.Length && s[j] is 'e' or 'E') { isFloat = true; j++; if (s[j] is '+' or '-') j++; while (j < s.Length && char.IsDigit(s[j])) j++; }
                    var text = s[i..j].Replace("_", "");
                    list.Add(new Tok(TokKind.Number, text, isFloat ? (object)double.Parse(text, CultureInfo.InvariantCulture) : long.Parse(text, CultureInfo.InvariantCulture)));
                    i = j;
                }
                else if (c is '\'' or '"')
                {
                    var sb = new StringBuilder();
                    int j = i + 1;
                    while (true)
                    {
                        if (j >= s.Length) throw new TemplateException($"line {line}: unterminated string");
                        char d = s[j];
                        if (d == c) break;
                        if (d == '\\' && j + 1 < s.Length)
                        {
                            char e = s[++j];
                            switch (e)
                            {
                                case 'n': sb.Append('\n'); break;
                                case 't': sb.Append('\t'); break;
                                case 'r': sb.Append('\r'); break;
                                case 'u' when j + 4 < s.Length: sb.Append((char)Convert.ToInt32(s.Substring(j + 1, 4), 16)); j += 4; break;
                                case '\\' or '\'' or '"': sb.Append(e); break;
                                default: sb.Append('\\').Append(e); break;
                            }
                        }
                        else sb.Append(d);
                        j++;
                    }
                    list.Add(new Tok(TokKind.String, sb.ToString(), sb.ToString()));
                    i = j + 1;
                }
                else
                {
                    string[] ops = ["==", "!=", "<=", ">=", "//", "**", "<", ">", "+", "-", "*", "/", "%", "~", "|", ".", ",", ":", "(", ")", "[", "]", "{", "}", "="];
                    var op = ops.FirstOrDefault(o => string.CompareOrdinal(s, i, o, 0, o.Length) == 0)
                        ?? throw new TemplateException($"line {line}: unexpected character '{c}'");
                    list.Add(new Tok(TokKind.Op, op));
                    i += op.Length;
                }
            }
        }
    }

    // ---------------------------------------------------------------- syntax

    abstract record Node;
    sealed record TextNode(string Text) : Node;
    sealed record OutputNode(Expr Value) : Node;
    sealed record IfNode(List<(Expr Condition, List<Node> Body)> Branches, List<Node>? Else) : Node;
    sealed record ForNode(List<string> Targets, Expr Iterable, Expr? Filter, List<Node> Body, List<Node>? Else) : Node;
    sealed record SetNode(string Name, string? Attribute, Expr? Value, List<Node>? Body) : Node;
    sealed record MacroNode(Macro Macro) : Node;
    sealed record GenerationNode(List<Node> Body) : Node;
    sealed record LoopControlNode(bool Break) : Node;

    abstract record Expr;
    sealed record Literal(object? Value) : Expr;
    sealed record NameExpr(string Name) : Expr;
    sealed record ListExpr(List<Expr> Items) : Expr;
    sealed record DictExpr(List<(Expr Key, Expr Value)> Items) : Expr;
    sealed record AttrExpr(Expr Target, string Name) : Expr;
    sealed record IndexExpr(Expr Target, Expr Index) : Expr;
    sealed record SliceExpr(Expr Target, Expr? Start, Expr? Stop, Expr? Step) : Expr;
    sealed record CallExpr(Expr Target, List<Expr> Args, List<(string Name, Expr Value)> Kwargs) : Expr;
    sealed record FilterExpr(Expr Target, string Name, List<Expr> Args, List<(string Name, Expr Value)> Kwargs) : Expr;
    sealed record TestExpr(Expr Target, string Name, List<Expr> Args, bool Negated) : Expr;
    sealed record UnaryExpr(string Op, Expr Operand) : Expr;
    sealed record BinaryExpr(string Op, Expr Left, Expr Right) : Expr;
    sealed record CondExpr(Expr Condition, Expr Then, Expr? Else) : Expr;

    sealed class Parser
    {
        readonly List<Part> parts;
        int at;
        Parser(List<Part> parts) => this.parts = parts;

        public static List<Node> Parse(List<Part> parts)
        {
            var p = new Parser(parts);
            var body = p.Body(out var end);
            if (end is not null) throw new TemplateException($"line {p.parts[p.at - 1].Line}: unexpected {{% {end} %}}");
            return body;
        }

        /// <summary>Nodes up to a closing tag of an enclosing statement (its name in <paramref name="end"/>; null at the end of the template).</summary>
        List<Node> Body(out string? end, params string[] enders)
        {
            var nodes = new List<Node>();
            while (at < parts.Count)
            {
                var part = parts[at++];
                switch (part.Kind)
                {
                    case PartKind.Text: nodes.Add(new TextNode(part.Text)); break;
                    case PartKind.Output:
                    {
                        var e = new ExprParser(part.Tokens, part.Line);
                        nodes.Add(new OutputNode(e.Expression()));
                        e.ExpectEnd();
                        break;
                    }
                    default:
                    {
                        var e = new ExprParser(part.Tokens, part.Line);
                        var keyword = e.Name();
                        if (enders.Contains(keyword)) { at--; end = keyword; return nodes; }
                        nodes.Add(Statement(keyword, e, part.Line));
                        break;
                    }
                }
            }
            end = null;
            if (enders.Length > 0) throw new TemplateException($"the template ends inside a block: expected {{% {enders[^1]} %}}");
            return nodes;
        }

        /// <summary>The keyword of the tag the body stopped at, consumed, with its tokens after it.</summary>
        ExprParser Closing(out string keyword)
        {
            var part = parts[at++];
            var e = new ExprParser(part.Tokens, part.Line);
            keyword = e.Name();
            return e;
        }

        Node Statement(string keyword, ExprParser e, int line)
        {
            switch (keyword)
            {
                case "if":
                {
                    var branches = new List<(Expr, List<Node>)>();
                    var condition = e.Expression(); e.ExpectEnd();
                    List<Node>? otherwise = null;
                    while (true)
                    {
                        var body = Body(out var end, "elif", "else", "endif");
                        branches.Add((condition, body));
                        var c = Closing(out var kw);
                        if (kw == "elif") { condition = c.Expression(); c.ExpectEnd(); continue; }
                        c.ExpectEnd();
                        if (kw == "else") { otherwise = Body(out _, "endif"); Closing(out _).ExpectEnd(); }
                        return new IfNode(branches, otherwise);
                    }
                }
                case "for":
                {
                    var targets = new List<string> { e.Name() };
                    while (e.Accept(",")) targets.Add(e.Name());
                    e.ExpectName("in");
                    var iterable = e.Expression(noCondition: true);
                    Expr? filter = null;
                    if (e.AcceptName("if")) filter = e.Expression(noCondition: true);
                    e.ExpectEnd();
                    var body = Body(out var end, "else", "endfor");
                    List<Node>? otherwise = null;
                    Closing(out var kw).ExpectEnd();
                    if (kw == "else") { otherwise = Body(out _, "endfor"); Closing(out _).ExpectEnd(); }
                    return new ForNode(targets, iterable, filter, body, otherwise);
                }
                case "set":
                {
                    var name = e.Name();
                    string? attr = e.Accept(".") ? e.Name() : null;
                    if (e.Accept("="))
                    {
                        var value = e.Expression();
                        if (e.Accept(",")) // set a = b, c: a tuple
                        {
                            var items = new List<Expr> { value };
                            do items.Add(e.Expression()); while (e.Accept(","));
                            value = new ListExpr(items);
                        }
                        e.ExpectEnd();
                        return new SetNode(name, attr, value, null);
                    }
                    e.ExpectEnd();
                    var block = Body(out _, "endset");
                    Closing(out _).ExpectEnd();
                    return new SetNode(name, attr, null, block);
                }
                case "macro":
                {
                    var name = e.Name();
                    var ps = new List<(string, Expr?)>();
                    e.Expect("(");
                    if (!e.Accept(")"))
                    {
                        do
                        {
                            var p = e.Name();
                            ps.Add((p, e.Accept("=") ? e.Expression() : null));
                        } while (e.Accept(","));
                        e.Expect(")");
                    }
                    e.ExpectEnd();
                    var body = Body(out _, "endmacro");
                    Closing(out _).ExpectEnd();
                    return new MacroNode(new Macro(name, ps, body));
                }
                case "generation":
                {
                    e.ExpectEnd();
                    var body = Body(out _, "endgeneration");
                    Closing(out _).ExpectEnd();
                    return new GenerationNode(body);
                }
                case "break" or "continue":
                    e.ExpectEnd();
                    return new LoopControlNode(keyword == "break");
                default:
                    throw new TemplateException($"line {line}: unknown statement \"{keyword}\"");
            }
        }
    }

    sealed class ExprParser(List<Tok> t, int line)
    {
        int i;
        Tok Peek => t[i];
        TemplateException Error(string what) => new($"line {line}: {what} (at \"{Peek.Text}\")");
        public bool Accept(string op) { if (Peek.Kind == TokKind.Op && Peek.Text == op) { i++; return true; } return false; }
        public void Expect(string op) { if (!Accept(op)) throw Error($"expected \"{op}\""); }
        public bool AcceptName(string name) { if (Peek.Kind == TokKind.Name && Peek.Text == name) { i++; return true; } return false; }
        public void ExpectName(string name) { if (!AcceptName(name)) throw Error($"expected \"{name}\""); }
        public string Name() => Peek.Kind == TokKind.Name ? t[i++].Text : throw Error("expected a name");
        public void ExpectEnd() { if (Peek.Kind != TokKind.End) throw Error("unexpected text in the tag"); }

        public Expr Expression(bool noCondition = false)
        {
            var e = Or();
            if (noCondition || !AcceptName("if")) return e;
            var condition = Or();
            Expr? otherwise = AcceptName("else") ? Expression() : null;
            return new CondExpr(condition, e, otherwise);
        }

        Expr Or() { var e = And(); while (AcceptName("or")) e = new BinaryExpr("or", e, And()); return e; }
        Expr And() { var e = Not(); while (AcceptName("and")) e = new BinaryExpr("and", e, Not()); return e; }
        Expr Not() => AcceptName("not") ? new UnaryExpr("not", Not()) : Compare();

        Expr Compare()
        {
            var e = Add();
            while (true)
            {
                if (Peek.Kind == TokKind.Op && Peek.Text is "==" or "!=" or "<" or "<=" or ">" or ">=") { var op = t[i++].Text; e = new BinaryExpr(op, e, Add()); }
                else if (AcceptName("in")) e = new BinaryExpr("in", e, Add());
                else if (Peek.Kind == TokKind.Name && Peek.Text == "not" && t[i + 1].Kind == TokKind.Name && t[i + 1].Text == "in") { i += 2; e = new UnaryExpr("not", new BinaryExpr("in", e, Add())); }
                else if (AcceptName("is"))
                {
                    bool negated = AcceptName("not");
                    var name = Name();
                    var args = new List<Expr>();
                    if (Accept("(")) { if (!Accept(")")) { do args.Add(Expression()); while (Accept(",")); Expect(")"); } }
                    else if (Peek.Kind is TokKind.Number or TokKind.String || (Peek.Kind == TokKind.Name && Peek.Text is not ("and" or "or" or "else" or "if"))) args.Add(Primary());
                    e = new TestExpr(e, name, args, negated);
                }
                else return e;
            }
        }

        Expr Add()
        {
            var e = Concat();
            while (Peek.Kind == TokKind.Op && Peek.Text is "+" or "-") { var op = t[i++].Text; e = new BinaryExpr(op, e, Concat()); }
            return e;
        }

        Expr Concat() { var e = Mul(); while (Accept("~")) e = new BinaryExpr("~", e, Mul()); return e; }

        Expr Mul()
        {
            var e = Pow();
            while (Peek.Kind == TokKind.Op && Peek.Text is "*" or "/" or "//" or "%") { var op = t[i++].Text; e = new BinaryExpr(op, e, Pow()); }
            return e;
        }

        Expr Pow() { var e = Unary(); while (Accept("**")) e = new BinaryExpr("**", e, Unary()); return e; }

        Expr Unary()
        {
            if (Accept("-")) return new UnaryExpr("-", Unary());
            if (Accept("+")) return Unary();
            return Filters(Postfix(Primary()));
        }

        Expr Filters(Expr e)
        {
            while (Accept("|"))
            {
                var name = Name();
                while (Accept(".")) name += "." + Name();
                var (args, kwargs) = Peek.Kind == TokKind.Op && Peek.Text == "(" ? Arguments() : ([], []);
                e = Postfix(new FilterExpr(e, name, args, kwargs));
            }
            return e;
        }

        (List<Expr>, List<(string, Expr)>) Arguments()
        {
            Expect("(");
            var args = new List<Expr>();
            var kwargs = new List<(string, Expr)>();
            if (Accept(")")) return (args, kwargs);
            do
            {
                if (Peek.Kind == TokKind.Name && t[i + 1].Kind == TokKind.Op && t[i + 1].Text == "=") { var n = Name(); i++; kwargs.Add((n, Expression())); }
                else args.Add(Expression());
            } while (Accept(","));
            Expect(")");
            return (args, kwargs);
        }

        Expr Postfix(Expr e)
        {
            while (true)
            {
                if (Accept(".")) e = new AttrExpr(e, Peek.Kind == TokKind.Number ? t[i++].Text : Name());
                else if (Peek.Kind == TokKind.Op && Peek.Text == "(") { var (a, k) = Arguments(); e = new CallExpr(e, a, k); }
                else if (Accept("["))
                {
                    Expr? start = null, stop = null, step = null;
                    bool slice = false;
                    if (!(Peek.Kind == TokKind.Op && Peek.Text == ":")) start = Expression();
                    if (Accept(":"))
                    {
                        slice = true;
                        if (!(Peek.Kind == TokKind.Op && Peek.Text is ":" or "]")) stop = Expression();
                        if (Accept(":") && !(Peek.Kind == TokKind.Op && Peek.Text == "]")) step = Expression();
                    }
                    Expect("]");
                    e = slice ? new SliceExpr(e, start, stop, step) : new IndexExpr(e, start!);
                }
                else return e;
            }
        }

        Expr Primary()
        {
            var tok = Peek;
            switch (tok.Kind)
            {
                case TokKind.Number or TokKind.String:
                    i++;
                    // Adjacent string literals concatenate, as in Python.
                    if (tok.Kind == TokKind.String && Peek.Kind == TokKind.String) { var s = (string)tok.Value!; while (Peek.Kind == TokKind.String) s += (string)t[i++].Value!; return new Literal(s); }
                    return new Literal(tok.Value);
                case TokKind.Name:
                    i++;
                    return tok.Text switch
                    {
                        "true" or "True" => new Literal(true),
                        "false" or "False" => new Literal(false),
                        "none" or "None" => new Literal(null),
                        _ => new NameExpr(tok.Text),
                    };
                case TokKind.Op when tok.Text == "(":
                {
                    i++;
                    if (Accept(")")) return new ListExpr([]);
                    var e = Expression();
                    if (Accept(","))
                    {
                        var items = new List<Expr> { e };
                        while (!(Peek.Kind == TokKind.Op && Peek.Text == ")")) { items.Add(Expression()); if (!Accept(",")) break; }
                        Expect(")");
                        return new ListExpr(items);
                    }
                    Expect(")");
                    return e;
                }
                case TokKind.Op when tok.Text == "[":
                {
                    i++;
                    var items = new List<Expr>();
                    while (!Accept("]")) { items.Add(Expression()); if (!Accept(",")) { Expect("]"); break; } }
                    return new ListExpr(items);
                }
                case TokKind.Op when tok.Text == "{":
                {
                    i++;
                    var items = new List<(Expr, Expr)>();
                    while (!Accept("}")) { var k = Expression(); Expect(":"); items.Add((k, Expression())); if (!Accept(",")) { Expect("}"); break; } }
                    return new DictExpr(items);
                }
                default: throw Error("expected a value");
            }
        }
    }

    // ---------------------------------------------------------------- evaluation

    sealed class Scope(Scope? parent)
    {
        public readonly Dictionary<string, object?> Vars = [];
        public Scope? Parent => parent;
        public bool TryGet(string name, out object? value)
        {
            for (var s = this; s is not null; s = s.Parent) if (s.Vars.TryGetValue(name, out value)) return true;
            value = null;
            return false;
        }
        public Scope Root { get { var s = this; while (s.Parent is not null) s = s.Parent; return s; } }
    }

    sealed class LoopControl(bool isBreak) : Exception { public bool Break => isBreak; }

    sealed class Renderer
    {
        public StringBuilder Out = new();
        public readonly List<(int, int)> Spans = [];

        public static readonly Dictionary<string, object?> Globals = new()
        {
            ["raise_exception"] = (Function)((a, _) => throw new TemplateException(a.Count > 0 ? Str(a[0]) : "raise_exception")),
            ["range"] = (Function)((a, _) =>
            {
                long start = 0, stop, step = 1;
                if (a.Count == 1) stop = Int(a[0]); else { start = Int(a[0]); stop = Int(a[1]); if (a.Count > 2) step = Int(a[2]); }
                if (step == 0) throw new TemplateException("range() step must not be zero");
                var list = new List<object?>();
                for (long v = start; step > 0 ? v < stop : v > stop; v += step) list.Add(v);
                return list;
            }),
            ["namespace"] = (Function)((a, k) => { var ns = new Namespace(); foreach (var kv in k) ns.Attrs.Set(kv.Key, kv.Value); return ns; }),
            ["dict"] = (Function)((_, k) => new Dict(k)),
            ["strftime_now"] = (Function)((a, _) => Strftime(DateTime.Now, a.Count > 0 ? Str(a[0]) : "%Y-%m-%d")),
        };

        public void Exec(List<Node> nodes, Scope scope)
        {
            foreach (var n in nodes) Exec(n, scope);
        }

        void Exec(Node node, Scope scope)
        {
            switch (node)
            {
                case TextNode t: Out.Append(t.Text); break;
                case OutputNode o: Out.Append(Str(Eval(o.Value, scope))); break;
                case IfNode f:
                    foreach (var (c, body) in f.Branches)
                        if (Truthy(Eval(c, scope))) { Exec(body, scope); return; }
                    if (f.Else is not null) Exec(f.Else, scope);
                    break;
                case ForNode f: For(f, scope); break;
                case SetNode s:
                {
                    object? value;
                    if (s.Value is not null) value = Eval(s.Value, scope);
                    else { var saved = Out; Out = new StringBuilder(); Exec(s.Body!, scope); value = Out.ToString(); Out = saved; }
                    if (s.Attribute is null) { scope.Vars[s.Name] = value; break; }
                    if (!scope.TryGet(s.Name, out var target) || target is not Namespace ns)
                        throw new TemplateException($"cannot set {s.Name}.{s.Attribute}: {s.Name} is not a namespace");
                    ns.Attrs.Set(s.Attribute, value);
                    break;
                }
                case MacroNode m: scope.Vars[m.Macro.Name] = m.Macro; break;
                case GenerationNode g:
                {
                    int start = Out.Length;
                    Exec(g.Body, scope);
                    Spans.Add((start, Out.Length));
                    break;
                }
                case LoopControlNode l: throw new LoopControl(l.Break);
            }
        }

        void For(ForNode f, Scope scope)
        {
            var items = Iterate(Eval(f.Iterable, scope)).ToList();
            if (f.Filter is not null)
                items = items.Where(item => { var s = new Scope(scope); Bind(s, f.Targets, item); return Truthy(Eval(f.Filter, s)); }).ToList();
            if (items.Count == 0) { if (f.Else is not null) Exec(f.Else, scope); return; }
            for (int i = 0; i < items.Count; i++)
            {
                var inner = new Scope(scope); // a for loop's sets do not leak out (Jinja's scoping; namespaces are how templates carry state)
                Bind(inner, f.Targets, items[i]);
                inner.Vars["loop"] = new Dict
                {
                    new("index", (long)i + 1), new("index0", (long)i), new("revindex", (long)(items.Count - i)), new("revindex0", (long)(items.Count - i - 1)),
                    new("first", i == 0), new("last", i == items.Count - 1), new("length", (long)items.Count),
                    new("previtem", i > 0 ? items[i - 1] : Undefined.Value), new("nextitem", i + 1 < items.Count ? items[i + 1] : Undefined.Value),
                };
                try { Exec(f.Body, inner); }
                catch (LoopControl c) { if (c.Break) break; }
            }
        }

        static void Bind(Scope s, List<string> targets, object? item)
        {
            if (targets.Count == 1) { s.Vars[targets[0]] = item; return; }
            var values = Iterate(item).ToList();
            if (values.Count != targets.Count) throw new TemplateException($"cannot unpack {values.Count} values into {targets.Count} names");
            for (int i = 0; i < targets.Count; i++) s.Vars[targets[i]] = values[i];
        }

        object? Eval(Expr e, Scope scope)
        {
            switch (e)
            {
                case Literal l: return l.Value;
                case NameExpr n: return scope.TryGet(n.Name, out var v) ? v : Undefined.Value;
                case ListExpr l: return l.Items.Select(x => Eval(x, scope)).ToList();
                case DictExpr d: return new Dict(d.Items.Select(kv => new KeyValuePair<string, object?>(Str(Eval(kv.Key, scope)), Eval(kv.Value, scope))));
                case AttrExpr a: return Attribute(Eval(a.Target, scope), a.Name);
                case IndexExpr ix: return Index(Eval(ix.Target, scope), Eval(ix.Index, scope));
                case SliceExpr s: return Slice(Eval(s.Target, scope), s.Start is null ? null : Eval(s.Start, scope), s.Stop is null ? null : Eval(s.Stop, scope), s.Step is null ? null : Eval(s.Step, scope));
                case CondExpr c: return Truthy(Eval(c.Condition, scope)) ? Eval(c.Then, scope) : c.Else is null ? Undefined.Value : Eval(c.Else, scope);
                case UnaryExpr u:
                {
                    var x = Eval(u.Operand, scope);
                    return u.Op switch
                    {
                        "not" => !Truthy(x),
                        "-" => x switch { long l => (object)(-l), double d => -d, bool b => -(b ? 1L : 0L), _ => throw new TemplateException($"cannot negate {TypeName(x)}") },
                        _ => throw new TemplateException($"unknown operator {u.Op}"),
                    };
                }
                case BinaryExpr b:
                    if (b.Op == "and") { var l = Eval(b.Left, scope); return Truthy(l) ? Eval(b.Right, scope) : l; }
                    if (b.Op == "or") { var l = Eval(b.Left, scope); return Truthy(l) ? l : Eval(b.Right, scope); }
                    return Binary(b.Op, Eval(b.Left, scope), Eval(b.Right, scope));
                case TestExpr t:
                {
                    var x = Eval(t.Target, scope);
                    bool r = Test(t.Name, x, t.Args.Select(a => Eval(a, scope)).ToList());
                    return t.Negated ? !r : r;
                }
                case FilterExpr f:
                    return Filter(f.Name, Eval(f.Target, scope), f.Args.Select(a => Eval(a, scope)).ToList(),
                        new Dict(f.Kwargs.Select(k => new KeyValuePair<string, object?>(k.Name, Eval(k.Value, scope)))));
                case CallExpr c:
                {
                    var args = c.Args.Select(a => Eval(a, scope)).ToList();
                    var kwargs = new Dict(c.Kwargs.Select(k => new KeyValuePair<string, object?>(k.Name, Eval(k.Value, scope))));
                    if (c.Target is AttrExpr m) return Method(Eval(m.Target, scope), m.Name, args, kwargs);
                    var target = Eval(c.Target, scope);
                    return target switch
                    {
                        Function fn => fn(args, kwargs),
                        Macro macro => Call(macro, args, kwargs, scope),
                        _ => throw new TemplateException($"{Describe(c.Target)} is not callable"),
                    };
                }
                default: throw new TemplateException($"cannot evaluate {e.GetType().Name}");
            }
        }

        static string Describe(Expr e) => e switch { NameExpr n => n.Name, AttrExpr a => $"{Describe(a.Target)}.{a.Name}", _ => "the value" };

        object? Call(Macro m, List<object?> args, Dict kwargs, Scope scope)
        {
            var s = new Scope(scope.Root);
            for (int i = 0; i < m.Params.Count; i++)
            {
                var (name, def) = m.Params[i];
                s.Vars[name] = i < args.Count ? args[i] : kwargs.TryGet(name, out var kv) ? kv : def is null ? Undefined.Value : Eval(def, s);
            }
            var saved = Out;
            Out = new StringBuilder();
            Exec(m.Body, s);
            var text = Out.ToString();
            Out = saved;
            return text;
        }

        static object? Attribute(object? x, string name) => x switch
        {
            Dict d => d.TryGet(name, out var v) ? v : Undefined.Value,
            Namespace ns => ns.Attrs.TryGet(name, out var v) ? v : Undefined.Value,
            List<object?> l when long.TryParse(name, out var i) => Index(l, i),
            _ => Undefined.Value,
        };

        static object? Index(object? x, object? key)
        {
            switch (x)
            {
                case Dict d: return d.TryGet(Str(key), out var v) ? v : Undefined.Value;
                case Namespace ns: return ns.Attrs.TryGet(Str(key), out var nv) ? nv : Undefined.Value;
                case List<object?> l when key is long or bool:
                {
                    long i = Int(key);
                    if (i < 0) i += l.Count;
                    return i >= 0 && i < l.Count ? l[(int)i] : Undefined.Value;
                }
                case string s when key is long or bool:
                {
                    long i = Int(key);
                    if (i < 0) i += s.Length;
                    return i >= 0 && i < s.Length ? s[(int)i].ToString() : Undefined.Value;
                }
                case List<object?> or string: return Attribute(x, Str(key));
                default: return Undefined.Value;
            }
        }

        static object? Slice(object? x, object? start, object? stop, object? step)
        {
            long st = step is null or Undefined ? 1 : Int(step);
            if (st == 0) throw new TemplateException("slice step must not be zero");
            List<object?> items = x switch
            {
                List<object?> l => l,
                string s => s.Select(c => (object?)c.ToString()).ToList(),
                _ => throw new TemplateException($"cannot slice {TypeName(x)}"),
            };
            int n = items.Count;
            long Clamp(object? v, long dflt, bool forStart)
            {
                if (v is null or Undefined) return dflt;
                long i = Int(v);
                if (i < 0) i += n;
                return st > 0 ? Math.Clamp(i, 0, n) : Math.Clamp(i, -1, n - 1);
            }
            long a = Clamp(start, st > 0 ? 0 : n - 1, true), b = Clamp(stop, st > 0 ? n : -1, false);
            var result = new List<object?>();
            for (long i = a; st > 0 ? i < b : i > b; i += st) result.Add(items[(int)i]);
            return x is string ? string.Concat(result.Select(Str)) : result;
        }

        static object? Binary(string op, object? a, object? b)
        {
            switch (op)
            {
                case "==": return Equal(a, b);
                case "!=": return !Equal(a, b);
                case "<" or "<=" or ">" or ">=":
                {
                    int c = a is string sa && b is string sb ? string.CompareOrdinal(sa, sb) : Num(a).CompareTo(Num(b));
                    return op switch { "<" => c < 0, "<=" => c <= 0, ">" => c > 0, _ => c >= 0 };
                }
                case "in": return b switch
                {
                    string s => s.Contains(Str(a), StringComparison.Ordinal),
                    List<object?> l => l.Any(x => Equal(x, a)),
                    Dict d => d.TryGet(Str(a), out _),
                    Undefined => false,
                    _ => throw new TemplateException($"'in' needs a string, list or mapping, not {TypeName(b)}"),
                };
                case "~": return Str(a) + Str(b);
                case "+":
                    if (a is string s1 && b is string s2) return s1 + s2;
                    if (a is List<object?> l1 && b is List<object?> l2) return l1.Concat(l2).ToList();
                    if (a is string || b is string) throw new TemplateException($"cannot add {TypeName(a)} and {TypeName(b)}");
                    return Arith(a, b, (x, y) => x + y, (x, y) => x + y);
                case "-": return Arith(a, b, (x, y) => x - y, (x, y) => x - y);
                case "*":
                    if (a is string rs && b is long rn) return string.Concat(Enumerable.Repeat(rs, (int)Math.Max(0, rn)));
                    return Arith(a, b, (x, y) => x * y, (x, y) => x * y);
                case "/": return Num(a) / Num(b);
                case "//":
                    if (IsInt(a) && IsInt(b)) { long x = Int(a), y = Int(b); if (y == 0) throw new TemplateException("division by zero"); return (long)Math.Floor((double)x / y); }
                    return Math.Floor(Num(a) / Num(b));
                case "%":
                    if (IsInt(a) && IsInt(b)) { long x = Int(a), y = Int(b); if (y == 0) throw new TemplateException("modulo by zero"); long r = x % y; return r != 0 && (r < 0) != (y < 0) ? r + y : r; }
                    { double x = Num(a), y = Num(b); return x - y * Math.Floor(x / y); }
                case "**": return IsInt(a) && IsInt(b) && Int(b) >= 0 ? (object)(long)Math.Pow(Int(a), Int(b)) : Math.Pow(Num(a), Num(b));
                default: throw new TemplateException($"unknown operator {op}");
            }
        }

        static object Arith(object? a, object? b, Func<long, long, long> ints, Func<double, double, double> doubles) =>
            IsInt(a) && IsInt(b) ? (object)ints(Int(a), Int(b)) : doubles(Num(a), Num(b));

        static bool IsInt(object? x) => x is long or bool;

        static bool Test(string name, object? x, List<object?> args) => name switch
        {
            "defined" => x is not Undefined,
            "undefined" => x is Undefined,
            "none" => x is null,
            "string" => x is string,
            "number" => x is long or double,
            "integer" => x is long,
            "float" => x is double,
            "boolean" => x is bool,
            "true" => x is true,
            "false" => x is false,
            "mapping" => x is Dict,
            "iterable" => x is string or List<object?> or Dict,
            "sequence" => x is string or List<object?> or Dict,
            "callable" => x is Function or Macro,
            "odd" => Int(x) % 2 != 0,
            "even" => Int(x) % 2 == 0,
            "divisibleby" => Int(x) % Int(args[0]) == 0,
            "eq" or "equalto" or "==" => Equal(x, args[0]),
            "ne" or "!=" => !Equal(x, args[0]),
            "lower" => x is string s && s == s.ToLowerInvariant(),
            "upper" => x is string s2 && s2 == s2.ToUpperInvariant(),
            "in" => (bool)Binary("in", x, args[0])!,
            _ => throw new TemplateException($"unknown test \"{name}\""),
        };

        object? Filter(string name, object? x, List<object?> a, Dict k)
        {
            object? Arg(int i, string key, object? dflt) => i < a.Count ? a[i] : k.TryGet(key, out var v) ? v : dflt;
            switch (name)
            {
                case "trim": return Method(x is string ? x : Str(x), "strip", a, k);
                case "upper": return Str(x).ToUpperInvariant();
                case "lower": return Str(x).ToLowerInvariant();
                case "capitalize": { var s = Str(x); return s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant(); }
                case "title": return Method(Str(x), "title", [], []);
                case "length" or "count": return x switch { string s => (long)s.Length, List<object?> l => (long)l.Count, Dict d => (long)d.Count, Undefined => 0L, _ => throw new TemplateException($"{TypeName(x)} has no length") };
                case "default" or "d":
                {
                    bool boolean = Truthy(Arg(1, "boolean", false));
                    return x is Undefined || (boolean && !Truthy(x)) ? Arg(0, "default_value", "") : x;
                }
                case "tojson": return ToJson(x, Arg(0, "indent", null) is { } ind and not Undefined ? (int)Int(ind) : null, 0);
                case "string": return Str(x);
                case "int": return x switch { long l => l, double d => (long)Math.Truncate(d), bool b => b ? 1L : 0L, string s when long.TryParse(s.Trim(), out var p) => p, _ => 0L };
                case "float": return x switch { string s when double.TryParse(s.Trim(), CultureInfo.InvariantCulture, out var p) => p, string => 0.0, _ => Num(x) };
                case "abs": return x switch { long l => (object)Math.Abs(l), _ => Math.Abs(Num(x)) };
                case "first": return Iterate(x).Cast<object?>().DefaultIfEmpty(Undefined.Value).First();
                case "last": return Iterate(x).Cast<object?>().DefaultIfEmpty(Undefined.Value).Last();
                case "list": return Iterate(x).ToList();
                case "reverse": return x is string rs ? new string(rs.Reverse().ToArray()) : Iterate(x).Reverse().ToList();
                case "join":
                {
                    var sep = Str(Arg(0, "d", ""));
                    var attr = Arg(1, "attribute", null);
                    return string.Join(sep, Iterate(x).Select(v => Str(attr is string at ? Attribute(v, at) : v)));
                }
                case "replace": return Str(x).Replace(Str(a[0]), Str(a[1]), StringComparison.Ordinal);
                case "items": return x is Dict d2 ? d2.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList() : throw new TemplateException("items needs a mapping");
                case "selectattr" or "rejectattr":
                {
                    bool keep = name == "selectattr";
                    var attr = Str(a[0]);
                    return Iterate(x).Where(v =>
                    {
                        var value = Attribute(v, attr);
                        bool r = a.Count > 1 ? Test(Str(a[1]), value, a.Skip(2).ToList()) : Truthy(value);
                        return r == keep;
                    }).ToList();
                }
                case "select" or "reject":
                {
                    bool keep = name == "select";
                    return Iterate(x).Where(v => (a.Count > 0 ? Test(Str(a[0]), v, a.Skip(1).ToList()) : Truthy(v)) == keep).ToList();
                }
                case "map":
                    if (k.TryGet("attribute", out var mapAttr)) return Iterate(x).Select(v => Attribute(v, Str(mapAttr))).ToList();
                    return Iterate(x).Select(v => Filter(Str(a[0]), v, a.Skip(1).ToList(), [])).ToList();
                case "unique": return Iterate(x).Aggregate(new List<object?>(), (acc, v) => { if (!acc.Any(y => Equal(y, v))) acc.Add(v); return acc; });
                case "safe" or "e" or "escape": return x is Undefined ? "" : Str(x);
                case "indent":
                {
                    var width = Arg(0, "width", 4L);
                    string pad = width is string ws ? ws : new string(' ', (int)Int(width));
                    bool first = Truthy(Arg(1, "first", false)), blank = Truthy(Arg(2, "blank", false));
                    var lines = Str(x).Split('\n');
                    for (int i = 0; i < lines.Length; i++)
                        if ((i > 0 || first) && (blank || lines[i].Length > 0)) lines[i] = pad + lines[i];
                    return string.Join('\n', lines);
                }
                case "wordcount": return (long)Str(x).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
                default: throw new TemplateException($"unknown filter \"{name}\"");
            }
        }

        /// <summary>Python's string, list and dict methods that templates call.</summary>
        static object? Method(object? x, string name, List<object?> a, Dict k)
        {
            if (x is string s)
            {
                string? chars = a.Count > 0 && a[0] is string c ? c : null;
                switch (name)
                {
                    case "strip": return chars is null ? s.Trim(PyWhitespace) : s.Trim(chars.ToCharArray());
                    case "lstrip": return chars is null ? s.TrimStart(PyWhitespace) : s.TrimStart(chars.ToCharArray());
                    case "rstrip": return chars is null ? s.TrimEnd(PyWhitespace) : s.TrimEnd(chars.ToCharArray());
                    case "upper": return s.ToUpperInvariant();
                    case "lower": return s.ToLowerInvariant();
                    case "title": return string.Concat(s.Select((ch, i) => i == 0 || !char.IsLetter(s[i - 1]) ? char.ToUpperInvariant(ch) : char.ToLowerInvariant(ch)));
                    case "capitalize": return s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();
                    case "startswith": return a[0] is List<object?> ps ? ps.Any(p => s.StartsWith(Str(p), StringComparison.Ordinal)) : s.StartsWith(Str(a[0]), StringComparison.Ordinal);
                    case "endswith": return a[0] is List<object?> ss ? ss.Any(p => s.EndsWith(Str(p), StringComparison.Ordinal)) : s.EndsWith(Str(a[0]), StringComparison.Ordinal);
                    case "replace": return a.Count > 2 ? ReplaceCount(s, Str(a[0]), Str(a[1]), Int(a[2])) : s.Replace(Str(a[0]), Str(a[1]), StringComparison.Ordinal);
                    case "split":
                    {
                        long max = a.Count > 1 ? Int(a[1]) : k.TryGet("maxsplit", out var m) ? Int(m) : -1;
                        if (a.Count == 0 || a[0] is null)
                        {
                            var words = s.Split(PyWhitespace, StringSplitOptions.RemoveEmptyEntries);
                            return words.Select(w => (object?)w).ToList();
                        }
                        var sep = Str(a[0]);
                        if (sep.Length == 0) throw new TemplateException("split() separator must not be empty");
                        var pieces = max < 0 ? s.Split(sep) : s.Split(sep, (int)max + 1);
                        return pieces.Select(p => (object?)p).ToList();
                    }
                    case "join": return string.Join(s, Iterate(a[0]).Select(Str));
                    case "count": return (long)(s.Length - s.Replace(Str(a[0]), "", StringComparison.Ordinal).Length) / Math.Max(1, Str(a[0]).Length);
                    case "find": return (long)s.IndexOf(Str(a[0]), StringComparison.Ordinal);
                    case "format": return string.Concat(s.Split("{}").Select((p, i) => i == 0 ? p : Str(a[i - 1]) + p));
                }
            }
            if (x is Dict d)
                switch (name)
                {
                    case "items": return d.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList();
                    case "keys": return d.Select(kv => (object?)kv.Key).ToList();
                    case "values": return d.Select(kv => kv.Value).ToList();
                    case "get": return d.TryGet(Str(a[0]), out var v) ? v : a.Count > 1 ? a[1] : null;
                }
            if (x is List<object?> l)
                switch (name)
                {
                    case "append": l.Add(a[0]); return null;
                    case "index": return (long)l.FindIndex(v => Equal(v, a[0]));
                    case "count": return (long)l.Count(v => Equal(v, a[0]));
                }
            if (Attribute(x, name) is Function f) return f(a, k);
            throw new TemplateException($"{TypeName(x)} has no method \"{name}\"");
        }

        static string ReplaceCount(string s, string old, string @new, long count)
        {
            var sb = new StringBuilder();
            int at = 0;
            for (long n = 0; n < count; n++)
            {
                int i = s.IndexOf(old, at, StringComparison.Ordinal);
                if (i < 0) break;
                sb.Append(s, at, i - at).Append(@new);
                at = i + old.Length;
            }
            return sb.Append(s, at, s.Length - at).ToString();
        }

        static readonly char[] PyWhitespace = [' ', '\t', '\n', '\r', '\v', '\f'];

        static IEnumerable<object?> Iterate(object? x) => x switch
        {
            List<object?> l => l,
            Dict d => d.Select(kv => (object?)kv.Key),
            string s => s.Select(c => (object?)c.ToString()),
            Undefined or null => [],
            _ => throw new TemplateException($"{TypeName(x)} is not iterable"),
        };

        public static bool Truthy(object? x) => x switch
        {
            null or Undefined => false,
            bool b => b,
            long l => l != 0,
            double d => d != 0,
            string s => s.Length > 0,
            List<object?> l => l.Count > 0,
            Dict d => d.Count > 0,
            _ => true,
        };

        static bool Equal(object? a, object? b)
        {
            if (a is Undefined || b is Undefined) return a is Undefined && b is Undefined;
            if (a is null || b is null) return a is null && b is null;
            if (a is string sa) return b is string sb && sa == sb;
            if (a is long or double or bool && b is long or double or bool) return Num(a) == Num(b);
            if (a is List<object?> la && b is List<object?> lb) return la.Count == lb.Count && la.Zip(lb).All(p => Equal(p.First, p.Second));
            if (a is Dict da && b is Dict db) return da.Count == db.Count && da.All(kv => db.TryGet(kv.Key, out var v) && Equal(kv.Value, v));
            return ReferenceEquals(a, b);
        }

        static double Num(object? x) => x switch
        {
            long l => l, double d => d, bool b => b ? 1 : 0,
            _ => throw new TemplateException($"expected a number, not {TypeName(x)}"),
        };

        static long Int(object? x) => x switch
        {
            long l => l, bool b => b ? 1 : 0, double d => (long)d,
            _ => throw new TemplateException($"expected an integer, not {TypeName(x)}"),
        };

        static string TypeName(object? x) => x switch
        {
            null => "None", Undefined => "undefined", string => "a string", long => "an integer", double => "a float", bool => "a boolean",
            List<object?> => "a list", Dict => "a mapping", Namespace => "a namespace", _ => x.GetType().Name,
        };

        /// <summary>A value as Jinja prints it (Python's str()).</summary>
        public static string Str(object? x) => x switch
        {
            string s => s,
            Undefined => "",
            null => "None",
            bool b => b ? "True" : "False",
            long l => l.ToString(CultureInfo.InvariantCulture),
            double d => PyFloat(d),
            _ => Repr(x),
        };

        /// <summary>Python's repr(): strings quoted, lists and dicts in Python's literal syntax.</summary>
        static string Repr(object? x) => x switch
        {
            string s => "'" + s.Replace("\\", "\\\\").Replace("'", "\\'").Replace("\n", "\\n") + "'",
            List<object?> l => "[" + string.Join(", ", l.Select(Repr)) + "]",
            Dict d => "{" + string.Join(", ", d.Select(kv => Repr(kv.Key) + ": " + Repr(kv.Value))) + "}",
            Namespace => "<Namespace>",
            _ => Str(x),
        };

        static string PyFloat(double d)
        {
            if (double.IsNaN(d)) return "nan";
            if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
            var r = d.ToString("R", CultureInfo.InvariantCulture);
            if (r.Contains('E')) { var parts = r.Split('E'); int exp = int.Parse(parts[1], CultureInfo.InvariantCulture); return $"{parts[0]}e{(exp < 0 ? "-" : "+")}{Math.Abs(exp):D2}"; }
            return r.Contains('.') ? r : r + ".0";
        }

        /// <summary>
        /// transformers' <c>tojson</c> filter: <c>json.dumps(x, ensure_ascii=False)</c>, so separators ", " and ": " on one
        /// line, or newlines and <paramref name="indent"/> spaces per level (then "," and ": ").
        /// </summary>
        static string ToJson(object? x, int? indent, int level)
        {
            string Nl(int lv) => indent is int n ? "\n" + new string(' ', n * lv) : "";
            string sep = indent is null ? ", " : ",";
            switch (x)
            {
                case null or Undefined: return "null";
                case bool b: return b ? "true" : "false";
                case long l: return l.ToString(CultureInfo.InvariantCulture);
                case double d: return PyFloat(d);
                case string s: return JsonString(s);
                case List<object?> list:
                    if (list.Count == 0) return "[]";
                    return "[" + string.Join(sep, list.Select(v => Nl(level + 1) + ToJson(v, indent, level + 1))) + Nl(level) + "]";
                case Dict dict:
                    if (dict.Count == 0) return "{}";
                    return "{" + string.Join(sep, dict.Select(kv => Nl(level + 1) + JsonString(kv.Key) + ": " + ToJson(kv.Value, indent, level + 1))) + Nl(level) + "}";
                case Namespace ns: return ToJson(ns.Attrs, indent, level);
                default: return JsonString(Str(x));
            }
        }

        static string JsonString(string s)
        {
            var sb = new StringBuilder("\"");
            foreach (var c in s)
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    case '\b': sb.Append("\\b"); break;
                    case '\f': sb.Append("\\f"); break;
                    default:
                        if (c < 0x20) sb.Append($"\\u{(int)c:x4}"); else sb.Append(c);
                        break;
                }
            return sb.Append('"').ToString();
        }

        /// <summary>The strftime directives templates use for dates (%d %b %Y %m %B %H %M %S %y %j %A %a).</summary>
        static string Strftime(DateTime t, string format)
        {
            var sb = new StringBuilder();
            for (int i = 0; i < format.Length; i++)
            {
                if (format[i] != '%' || i + 1 == format.Length) { sb.Append(format[i]); continue; }
                char c = format[++i];
                sb.Append(c switch
                {
                    'd' => t.ToString("dd", CultureInfo.InvariantCulture), 'm' => t.ToString("MM", CultureInfo.InvariantCulture),
                    'Y' => t.ToString("yyyy", CultureInfo.InvariantCulture), 'y' => t.ToString("yy", CultureInfo.InvariantCulture),
                    'b' => t.ToString("MMM", CultureInfo.InvariantCulture), 'B' => t.ToString("MMMM", CultureInfo.InvariantCulture),
                    'a' => t.ToString("ddd", CultureInfo.InvariantCulture), 'A' => t.ToString("dddd", CultureInfo.InvariantCulture),
                    'H' => t.ToString("HH", CultureInfo.InvariantCulture), 'M' => t.ToString("mm", CultureInfo.InvariantCulture),
                    'S' => t.ToString("ss", CultureInfo.InvariantCulture), 'j' => t.DayOfYear.ToString("D3", CultureInfo.InvariantCulture),
                    '%' => "%",
                    _ => "%" + c,
                });
            }
            return sb.ToString();
        }
    }
}
