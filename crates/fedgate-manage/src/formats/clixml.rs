//! CliXML, PowerShell's serialization format (`Export-Clixml`; MS-PSRP §2.2.5): reader and writer.
//!
//! The document is `<Objs>` holding one `<Obj>` per exported object. An `<Obj>` carries its type
//! names (`<TN RefId>` with `<T>` from most to least specific, or `<TNRef RefId>` naming an
//! earlier `<TN>`), optionally a `<ToString>`, and its properties in `<Props>` (adapted) and `<MS>`
//! (extended; an `<MS>` inside may group a property set), each property an element with its name
//! in the `N` attribute. Values: `<S>` and the other string-like elements, `<B>`, the numbers
//! (`<I32>`, `<U32>`, `<I64>`, …), `<Nil>`, `<Ref RefId>` (an object serialized earlier, reused),
//! or a nested `<Obj>`: a list when it holds `<LST>`/`<IE>`/`<STK>`/`<QUE>`, a dictionary with
//! `<DCT>`, otherwise its `<ToString>` (enums: `<ToString>Federated</ToString><I32>0</I32>`;
//! identities), or its properties when it has no `<ToString>`. Strings and names are decoded
//! from the `_xHHHH_` escapes of §2.2.5.3.2 (UTF-16 code units).
//!
//! Hardening: quick-xml never expands entities beyond the five predefined ones and character
//! references; a DTD is refused; nesting is limited to [`MAX_DEPTH`], the number of elements to
//! [`MAX_ELEMENTS`] and what `<Ref>` copies to [`MAX_REF_COPIES`] values (references to lists of
//! references would otherwise expand exponentially); the file size is limited by
//! [`super::MAX_FILE_BYTES`].

use std::collections::HashMap;
use std::fmt::Write as _;

use fedgate_model::XmppAllowedPartner;
use fedgate_model::partner::fields::{FieldKind, FieldValue, PartnerField};
use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

use super::{FormatError, Record};
use crate::params::ParamValue;

/// Deepest element nesting accepted (a partner export is 5 deep).
pub const MAX_DEPTH: usize = 64;
/// Most elements accepted in one file (100,000 partners are about 3 million).
pub const MAX_ELEMENTS: usize = 8_000_000;

/// The CliXML namespace.
pub const NAMESPACE: &str = "http://schemas.microsoft.com/powershell/2004/04";

/// The type names Skype for Business gives an allowed partner and its enums.
pub const PARTNER_TYPE_NAMES: [&str; 3] = [
    "Microsoft.Rtc.Management.WritableConfig.Settings.XmppFederation.XmppAllowedPartner#Decorated",
    "Microsoft.Rtc.Management.WritableConfig.Settings.XmppFederation.XmppAllowedPartner",
    "System.Object",
];
const ENUM_NAMESPACE: &str = "Microsoft.Rtc.Management.WritableConfig.Settings.XmppFederation";
const STRING_LIST_TYPE: &str = "System.Collections.Generic.List`1[[System.String, mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089]]";

#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
    text: String,
    /// Byte offset of the start tag, for error locations.
    pos: usize,
}

impl Node {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// `line N` of a byte offset.
fn line_of(text: &str, pos: usize) -> String {
    let end = pos.min(text.len());
    let line = text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1;
    format!("line {line}")
}

fn utf8_name(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parse the document, with the limits of the module documentation, handing each child of the
/// document element to `on_child` as a small tree as soon as it is complete (so a large export
/// is never held as one tree). The document element must be `<Objs>`.
fn parse(
    text: &str,
    mut on_child: impl FnMut(Node) -> Result<(), FormatError>,
) -> Result<(), FormatError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().expand_empty_elements = true;
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Node> = Vec::new();
    let mut root_done = false;
    let mut elements = 0usize;
    let at = |pos: u64| Some(line_of(text, usize::try_from(pos).unwrap_or(usize::MAX)));
    loop {
        let event = reader.read_event().map_err(|e| {
            FormatError::new(
                at(reader.error_position()),
                format!("not well-formed XML: {e}."),
            )
        })?;
        let pos = reader.buffer_position();
        let bad = |message: &str| FormatError::new(at(pos), message.to_owned());
        match event {
            Event::Start(start) => {
                if root_done {
                    return Err(bad("content after the end of the document."));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(bad(&format!(
                        "elements nested deeper than {MAX_DEPTH} levels are not accepted."
                    )));
                }
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(bad(&format!(
                        "more than {MAX_ELEMENTS} elements are not accepted; split the export."
                    )));
                }
                let mut node = Node {
                    name: utf8_name(start.local_name().as_ref()),
                    pos: usize::try_from(pos).unwrap_or(usize::MAX),
                    ..Node::default()
                };
                for attr in start.attributes() {
                    let attr = attr.map_err(|e| bad(&format!("bad attribute: {e}.")))?;
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| bad(&format!("bad attribute value: {e}.")))?;
                    node.attrs.push((
                        utf8_name(attr.key.local_name().as_ref()),
                        value.into_owned(),
                    ));
                }
                if stack.is_empty() && node.name != "Objs" {
                    return Err(bad(&format!(
                        "not a CliXML file: the document element is <{}>, <Objs> expected (as Export-Clixml writes).",
                        node.name
                    )));
                }
                stack.push(node);
            }
            Event::End(_) => {
                let mut node = stack
                    .pop()
                    .ok_or_else(|| bad("an end tag without a start tag."))?;
                if !node.children.is_empty() {
                    // Whitespace between child elements means nothing in CliXML.
                    node.text = String::new();
                }
                match stack.len() {
                    0 => root_done = true,
                    1 => on_child(node)?,
                    _ => {
                        if let Some(parent) = stack.last_mut() {
                            parent.children.push(node);
                        }
                    }
                }
            }
            Event::Text(t) => {
                let content = t
                    .xml10_content()
                    .map_err(|e| bad(&format!("bad text: {e}.")))?;
                match stack.len() {
                    // Text directly in <Objs> (indentation) means nothing.
                    1 => {}
                    0 if content.trim().is_empty() => {}
                    0 => return Err(bad("text outside the document element.")),
                    _ => {
                        if let Some(top) = stack.last_mut() {
                            top.text.push_str(&content);
                        }
                    }
                }
            }
            Event::CData(c) => {
                let content = c.decode().map_err(|e| bad(&format!("bad CDATA: {e}.")))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&content);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten().map(|c| c.to_string())
                } else {
                    r.decode()
                        .ok()
                        .and_then(|name| resolve_predefined_entity(&name))
                        .map(str::to_owned)
                };
                let resolved = resolved.ok_or_else(|| {
                    bad(&format!(
                        "the reference &{}; is not one of XML's predefined entities or a character reference (entities are not expanded).",
                        String::from_utf8_lossy(&r)
                    ))
                })?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Event::DocType(_) => {
                return Err(bad(
                    "a document type declaration (DTD) is not accepted in a CliXML file.",
                ));
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Empty(_) => return Err(bad("unexpected empty element event.")),
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(FormatError::new(
            Some(line_of(text, text.len())),
            "the document ends before its elements are closed.",
        ));
    }
    if !root_done {
        return Err(FormatError::new(None, "the file holds no XML element."));
    }
    Ok(())
}

/// Decode the `_xHHHH_` escapes of MS-PSRP §2.2.5.3.2 (UTF-16 code units, surrogate pairs as two
/// escapes). An escape that does not form a character becomes U+FFFD.
pub fn decode_string(s: &str) -> String {
    if !s.contains("_x") {
        return s.to_owned();
    }
    fn escape_at(s: &str) -> Option<u16> {
        let b = s.as_bytes();
        if b.len() >= 7
            && b[0] == b'_'
            && b[1] == b'x'
            && b[6] == b'_'
            && b[2..6].iter().all(u8::is_ascii_hexdigit)
        {
            u16::from_str_radix(&s[2..6], 16).ok()
        } else {
            None
        }
    }
    fn flush(pending: &mut Vec<u16>, out: &mut String) {
        out.extend(
            char::decode_utf16(pending.drain(..)).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)),
        );
    }
    let mut out = String::with_capacity(s.len());
    let mut pending = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(unit) = escape_at(rest) {
            pending.push(unit);
            rest = &rest[7..];
            continue;
        }
        flush(&mut pending, &mut out);
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    flush(&mut pending, &mut out);
    out
}

/// Encode a string as PowerShell does (§2.2.5.3.2): control characters and characters outside
/// the BMP as `_xHHHH_`, an underscore that would read as an escape as `_x005F_`; then XML-escape.
pub fn encode_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        let after = &rest[c.len_utf8()..];
        let looks_escaped = c == '_' && {
            let probe = format!("_{}", after.get(..6).unwrap_or(""));
            probe.len() == 7 && decode_string(&probe) != probe
        };
        if looks_escaped || c.is_control() || (c as u32) > 0xFFFF {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "_x{unit:04X}_");
            }
        } else {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                c => out.push(c),
            }
        }
        rest = after;
    }
    out
}

/// Reads the objects of a document, remembering type names and objects by RefId.
#[derive(Default)]
struct Interpreter {
    types: HashMap<String, Vec<String>>,
    /// Objects by RefId, with their weight (see [`weight`]).
    objects: HashMap<String, (ParamValue, usize)>,
    /// Values copied by `<Ref>` so far, by weight: bounded by [`MAX_REF_COPIES`], so that
    /// references to references cannot make a small file expand exponentially.
    copied: usize,
}

/// How many values `<Ref>` may copy in one file, in total (a partner export copies none).
pub const MAX_REF_COPIES: usize = 1_000_000;

/// The number of values in a value (itself and everything inside).
fn weight(value: &ParamValue) -> usize {
    match value {
        ParamValue::List(items) => 1 + items.iter().map(weight).sum::<usize>(),
        ParamValue::Map(entries) => 1 + entries.iter().map(|(_, v)| weight(v)).sum::<usize>(),
        _ => 1,
    }
}

impl Interpreter {
    fn error(&self, text: &str, node: &Node, message: String) -> FormatError {
        FormatError::new(Some(line_of(text, node.pos)), message)
    }

    fn type_names(&mut self, text: &str, obj: &Node) -> Result<Vec<String>, FormatError> {
        if let Some(tn) = obj.child("TN") {
            let names: Vec<String> = tn
                .children
                .iter()
                .filter(|c| c.name == "T")
                .map(|t| decode_string(&t.text))
                .collect();
            if let Some(id) = tn.attr("RefId") {
                self.types.insert(id.to_owned(), names.clone());
            }
            return Ok(names);
        }
        if let Some(r) = obj.child("TNRef") {
            let id = r.attr("RefId").unwrap_or("");
            return self.types.get(id).cloned().ok_or_else(|| {
                self.error(
                    text,
                    r,
                    format!("<TNRef RefId=\"{id}\"> names no earlier <TN> of this file."),
                )
            });
        }
        Ok(Vec::new())
    }

    /// The properties of `<Props>` and `<MS>` (property sets flattened), in file order.
    fn properties(
        &mut self,
        text: &str,
        obj: &Node,
    ) -> Result<Vec<(String, ParamValue)>, FormatError> {
        let mut out = Vec::new();
        for section in obj
            .children
            .iter()
            .filter(|c| c.name == "Props" || c.name == "MS")
        {
            self.members(text, section, &mut out)?;
        }
        Ok(out)
    }

    fn members(
        &mut self,
        text: &str,
        section: &Node,
        out: &mut Vec<(String, ParamValue)>,
    ) -> Result<(), FormatError> {
        for member in &section.children {
            if member.name == "MS" {
                self.members(text, member, out)?;
                continue;
            }
            let name = member.attr("N").ok_or_else(|| {
                self.error(
                    text,
                    member,
                    format!("a <{}> property without a name (N attribute).", member.name),
                )
            })?;
            out.push((decode_string(name), self.value(text, member)?));
        }
        Ok(())
    }

    fn value(&mut self, text: &str, node: &Node) -> Result<ParamValue, FormatError> {
        Ok(match node.name.as_str() {
            "Nil" => ParamValue::Null,
            "B" => match node.text.trim() {
                "true" => ParamValue::Bool(true),
                "false" => ParamValue::Bool(false),
                other => {
                    return Err(self.error(
                        text,
                        node,
                        format!("<B> holds \"{other}\"; true or false expected."),
                    ));
                }
            },
            "S" | "URI" | "XD" | "SBK" | "Version" | "G" | "DT" | "TS" => {
                ParamValue::Text(decode_string(&node.text))
            }
            "C" | "By" | "SB" | "I16" | "U16" | "I32" | "U32" | "I64" | "U64" | "Sg" | "Db"
            | "D" => ParamValue::Text(node.text.trim().to_owned()),
            "Ref" => {
                let id = node.attr("RefId").unwrap_or("");
                let Some((value, size)) = self.objects.get(id) else {
                    return Err(self.error(
                        text,
                        node,
                        format!("<Ref RefId=\"{id}\"> names no earlier object of this file."),
                    ));
                };
                self.copied = self.copied.saturating_add(*size);
                if self.copied > MAX_REF_COPIES {
                    return Err(self.error(
                        text,
                        node,
                        format!(
                            "the <Ref> references of this file expand to more than {MAX_REF_COPIES} values; not accepted."
                        ),
                    ));
                }
                return Ok(value.clone());
            }
            "Obj" => self.object_value(text, node)?,
            other => {
                return Err(self.error(
                    text,
                    node,
                    format!("<{other}> is not a value this reader accepts (MS-PSRP §2.2.5)."),
                ));
            }
        })
    }

    fn object_value(&mut self, text: &str, node: &Node) -> Result<ParamValue, FormatError> {
        self.type_names(text, node)?;
        let list = node
            .children
            .iter()
            .find(|c| matches!(c.name.as_str(), "LST" | "IE" | "STK" | "QUE"));
        let value = if let Some(list) = list {
            ParamValue::List(
                list.children
                    .iter()
                    .map(|item| self.value(text, item))
                    .collect::<Result<_, _>>()?,
            )
        } else if let Some(dct) = node.child("DCT") {
            let mut entries = Vec::new();
            for en in dct.children.iter().filter(|c| c.name == "En") {
                let mut key = None;
                let mut value = ParamValue::Null;
                for part in &en.children {
                    match part.attr("N") {
                        Some("Key") => key = Some(self.value(text, part)?),
                        Some("Value") => value = self.value(text, part)?,
                        _ => {}
                    }
                }
                let key = match key {
                    Some(ParamValue::Text(k)) => k,
                    _ => {
                        return Err(self.error(
                            text,
                            en,
                            "a dictionary entry without a text key.".into(),
                        ));
                    }
                };
                entries.push((key, value));
            }
            ParamValue::Map(entries)
        } else if let Some(s) = node.child("ToString") {
            ParamValue::Text(decode_string(&s.text))
        } else if node.child("Props").is_some() || node.child("MS").is_some() {
            ParamValue::Map(self.properties(text, node)?)
        } else if let Some(primitive) = node
            .children
            .iter()
            .find(|c| !matches!(c.name.as_str(), "TN" | "TNRef"))
        {
            self.value(text, primitive)?
        } else {
            ParamValue::Null
        };
        if let Some(id) = node.attr("RefId") {
            self.objects
                .insert(id.to_owned(), (value.clone(), weight(&value)));
        }
        Ok(value)
    }
}

/// Read the objects of an `Export-Clixml` file.
pub fn read(text: &str) -> Result<Vec<Record>, FormatError> {
    let mut interpreter = Interpreter::default();
    let mut records = Vec::new();
    parse(text, |obj| {
        let location = format!("object {}", records.len() + 1);
        if obj.name != "Obj" {
            return Err(FormatError::new(
                Some(location),
                format!(
                    "a <{}> value, not an object; export objects (Get-CsXmppAllowedPartner | Export-Clixml partners.xml).",
                    obj.name
                ),
            ));
        }
        let type_names = interpreter.type_names(text, &obj)?;
        let fields = interpreter.properties(text, &obj)?;
        records.push(Record {
            location,
            type_names,
            fields,
        });
        Ok(())
    })?;
    Ok(records)
}

/// Writes objects with RefIds and type names declared once (`<TN>`) and reused (`<TNRef>`).
struct Writer {
    out: String,
    next_obj: usize,
    types: Vec<String>,
}

impl Writer {
    fn obj_ref(&mut self) -> usize {
        self.next_obj += 1;
        self.next_obj - 1
    }

    /// `<TN>` the first time a type list is written, `<TNRef>` after.
    fn type_names(&mut self, indent: &str, names: &[&str]) {
        let key = names.join("\n");
        if let Some(id) = self.types.iter().position(|t| *t == key) {
            let _ = writeln!(self.out, "{indent}<TNRef RefId=\"{id}\" />");
            return;
        }
        let id = self.types.len();
        self.types.push(key);
        let _ = writeln!(self.out, "{indent}<TN RefId=\"{id}\">");
        for name in names {
            let _ = writeln!(self.out, "{indent}  <T>{}</T>", encode_string(name));
        }
        let _ = writeln!(self.out, "{indent}</TN>");
    }

    fn string(&mut self, name: &str, value: Option<&str>) {
        let _ = match value {
            Some(v) => writeln!(self.out, "      <S N=\"{name}\">{}</S>", encode_string(v)),
            None => writeln!(self.out, "      <Nil N=\"{name}\" />"),
        };
    }

    fn boolean(&mut self, name: &str, value: bool) {
        let _ = writeln!(self.out, "      <B N=\"{name}\">{value}</B>");
    }

    /// An enum value: an object of the enum's type with its name and number.
    fn enumeration(&mut self, name: &str, enum_type: &str, value: &str, number: usize) {
        let id = self.obj_ref();
        let _ = writeln!(self.out, "      <Obj N=\"{name}\" RefId=\"{id}\">");
        let type_name = format!("{ENUM_NAMESPACE}.{enum_type}");
        self.type_names(
            "        ",
            &[
                &type_name,
                "System.Enum",
                "System.ValueType",
                "System.Object",
            ],
        );
        let _ = writeln!(self.out, "        <ToString>{value}</ToString>");
        let _ = writeln!(self.out, "        <I32>{number}</I32>");
        let _ = writeln!(self.out, "      </Obj>");
    }

    fn string_list(&mut self, name: &str, items: &[String]) {
        let id = self.obj_ref();
        let _ = writeln!(self.out, "      <Obj N=\"{name}\" RefId=\"{id}\">");
        self.type_names("        ", &[STRING_LIST_TYPE, "System.Object"]);
        if items.is_empty() {
            let _ = writeln!(self.out, "        <LST />");
        } else {
            let _ = writeln!(self.out, "        <LST>");
            for item in items {
                let _ = writeln!(self.out, "          <S>{}</S>", encode_string(item));
            }
            let _ = writeln!(self.out, "        </LST>");
        }
        let _ = writeln!(self.out, "      </Obj>");
    }

    /// A partner field's property, by its kind.
    fn field(&mut self, field: PartnerField, value: FieldValue) {
        let name = field.name();
        match value {
            FieldValue::Text(t) => self.string(name, Some(&t)),
            FieldValue::Bool(b) => self.boolean(name, b),
            FieldValue::OptionalU32(Some(n)) => {
                let _ = writeln!(self.out, "      <U32 N=\"{name}\">{n}</U32>");
            }
            FieldValue::OptionalU32(None) => self.string(name, None),
            FieldValue::Choice {
                name: value,
                number,
            } => {
                let enum_type = match field.kind() {
                    FieldKind::Choice(kind) => kind.type_name,
                    _ => name,
                };
                self.enumeration(name, enum_type, value, number)
            }
            FieldValue::OptionalProxy(t) => self.string(name, t.map(|t| t.to_string()).as_deref()),
            FieldValue::DomainList(list) => {
                let items: Vec<String> = list.iter().map(|d| d.to_string()).collect();
                self.string_list(name, &items)
            }
        }
    }

    fn partner(&mut self, p: &XmppAllowedPartner) {
        let id = self.obj_ref();
        let identity = p.identity.to_string();
        let _ = writeln!(self.out, "  <Obj RefId=\"{id}\">");
        self.type_names("    ", &PARTNER_TYPE_NAMES);
        let _ = writeln!(
            self.out,
            "    <ToString>{}</ToString>",
            encode_string(&identity)
        );
        let _ = writeln!(self.out, "    <Props>");
        self.string("Identity", Some(&identity));
        self.string("Domain", Some(&identity));
        for field in PartnerField::ALL {
            self.field(field, field.get(p));
        }
        let _ = writeln!(self.out, "    </Props>");
        let _ = writeln!(self.out, "  </Obj>");
    }
}

/// The partners as `Get-CsXmppAllowedPartner | Export-Clixml` writes them (UTF-8 here; Windows
/// PowerShell writes UTF-16, which the reader accepts too).
pub fn write_partners(partners: &[XmppAllowedPartner]) -> String {
    let mut w = Writer {
        out: format!("<Objs Version=\"1.1.0.1\" xmlns=\"{NAMESPACE}\">\n"),
        next_obj: 0,
        types: Vec::new(),
    };
    for p in partners {
        w.partner(p);
    }
    w.out.push_str("</Objs>\n");
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> ParamValue {
        ParamValue::Text(s.into())
    }

    /// Two partners as Export-Clixml writes them: type names declared once and reused with
    /// TNRef, enums as objects with ToString and I32, lists as LST, Nil, an extended property in
    /// MS, an escaped character, a Ref to an earlier object.
    const TWO_PARTNERS: &str = r#"<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">
  <Obj RefId="0">
    <TN RefId="0">
      <T>Microsoft.Rtc.Management.WritableConfig.Settings.XmppFederation.XmppAllowedPartner#Decorated</T>
      <T>Microsoft.Rtc.Management.WritableConfig.Settings.XmppFederation.XmppAllowedPartner</T>
      <T>System.Object</T>
    </TN>
    <ToString>contoso.com</ToString>
    <Props>
      <Obj N="Identity" RefId="1">
        <TN RefId="1"><T>Microsoft.Rtc.Management.Xds.XdsGlobalRelativeIdentity</T><T>System.Object</T></TN>
        <ToString>contoso.com</ToString>
        <Props><S N="ScopeClass">Global</S></Props>
      </Obj>
      <Obj N="AdditionalDomains" RefId="2">
        <TN RefId="2"><T>System.Collections.Generic.List`1[[System.String]]</T><T>System.Object</T></TN>
        <LST><S>contoso.net</S><S>*.contoso.org</S></LST>
      </Obj>
      <S N="Description">Tom &amp; Jerry_x000A_line 2 _x005F_x0041_ &#x263A;</S>
      <Obj N="PartnerType" RefId="3">
        <TN RefId="3"><T>Microsoft.Rtc.Management.WritableConfig.Settings.XmppFederation.PartnerType</T><T>System.Enum</T><T>System.ValueType</T><T>System.Object</T></TN>
        <ToString>Federated</ToString>
        <I32>0</I32>
      </Obj>
      <B N="SupportDialbackNegotiation">false</B>
      <U32 N="ConnectionLimit">25</U32>
      <Nil N="ProxyFqdn" />
    </Props>
    <MS><S N="Element">&lt;XmppAllowedPartner/&gt;</S><MS N="Set"><I32 N="Inner">1</I32></MS></MS>
  </Obj>
  <Obj RefId="4">
    <TNRef RefId="0" />
    <ToString>fabrikam.com</ToString>
    <Props>
      <S N="Identity">fabrikam.com</S>
      <Obj N="AdditionalDomains" RefId="5"><TNRef RefId="2" /><LST /></Obj>
      <Obj N="PartnerType" RefId="6"><TNRef RefId="3" /><ToString>PublicVerified</ToString><I32>1</I32></Obj>
      <Ref N="Copy" RefId="2" />
    </Props>
  </Obj>
</Objs>
"#;

    #[test]
    fn reads_objects_typenames_refs_enums_lists_nil() {
        let records = read(TWO_PARTNERS).unwrap();
        assert_eq!(records.len(), 2);
        let a = &records[0];
        assert_eq!(a.location, "object 1");
        assert_eq!(a.type_names, PARTNER_TYPE_NAMES);
        let field = |r: &Record, n: &str| {
            r.fields
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(field(a, "Identity"), Some(t("contoso.com")));
        assert_eq!(
            field(a, "AdditionalDomains"),
            Some(ParamValue::List(vec![t("contoso.net"), t("*.contoso.org")]))
        );
        assert_eq!(
            field(a, "Description"),
            Some(t("Tom & Jerry\nline 2 _x0041_ \u{263A}"))
        );
        assert_eq!(field(a, "PartnerType"), Some(t("Federated")));
        assert_eq!(
            field(a, "SupportDialbackNegotiation"),
            Some(ParamValue::Bool(false))
        );
        assert_eq!(field(a, "ConnectionLimit"), Some(t("25")));
        assert_eq!(field(a, "ProxyFqdn"), Some(ParamValue::Null));
        assert_eq!(field(a, "Element"), Some(t("<XmppAllowedPartner/>")));
        assert_eq!(
            field(a, "Inner"),
            Some(t("1")),
            "property sets are flattened"
        );
        let b = &records[1];
        assert_eq!(b.location, "object 2");
        assert_eq!(b.type_names, PARTNER_TYPE_NAMES, "TNRef reuses the TN");
        assert_eq!(field(b, "PartnerType"), Some(t("PublicVerified")));
        assert_eq!(
            field(b, "AdditionalDomains"),
            Some(ParamValue::List(vec![]))
        );
        assert_eq!(
            field(b, "Copy"),
            Some(ParamValue::List(vec![t("contoso.net"), t("*.contoso.org")])),
            "Ref reuses the object serialized earlier"
        );
    }

    #[test]
    fn refuses_entities_dtd_depth_and_dangling_refs() {
        let dtd = r#"<?xml version="1.0"?><!DOCTYPE Objs [<!ENTITY x "boom">]><Objs><Obj><Props><S N="Identity">&x;</S></Props></Obj></Objs>"#;
        let e = read(dtd).unwrap_err();
        assert!(e.to_string().contains("DTD"), "{e}");
        let entity = r#"<Objs><Obj><Props><S N="Identity">&x;</S></Props></Obj></Objs>"#;
        let e = read(entity).unwrap_err();
        assert!(e.to_string().contains("not expanded"), "{e}");
        let deep = format!(
            "<Objs>{}{}</Objs>",
            "<Obj>".repeat(MAX_DEPTH + 1),
            "</Obj>".repeat(MAX_DEPTH + 1)
        );
        let e = read(&deep).unwrap_err();
        assert!(e.to_string().contains("nested deeper"), "{e}");
        let e = read(r#"<Objs><Obj><TNRef RefId="9"/></Obj></Objs>"#).unwrap_err();
        assert!(e.to_string().contains("TNRef"), "{e}");
        let e =
            read(r#"<Objs><Obj><Props><Ref N="x" RefId="7"/></Props></Obj></Objs>"#).unwrap_err();
        assert!(e.to_string().contains("Ref RefId=\"7\""), "{e}");
        let e = read("<Objs><Obj></Objs>").unwrap_err();
        assert!(e.to_string().contains("not well-formed"), "{e}");
        let e = read("<Other/>").unwrap_err();
        assert!(e.to_string().contains("<Objs> expected"), "{e}");
        let e = read("<Objs><S>x</S></Objs>").unwrap_err();
        assert_eq!(e.location.as_deref(), Some("object 1"));
    }

    #[test]
    fn references_to_references_cannot_expand_exponentially() {
        // Each object is a list of two references to the previous one: 2^40 values if copied.
        let mut doc = String::from(r#"<Objs><Obj RefId="0"><Props><S N="x">a</S></Props></Obj>"#);
        doc.push_str(r#"<Obj RefId="r"><Props>"#);
        doc.push_str(r#"<Obj N="l0" RefId="l0"><LST><S>x</S><S>y</S></LST></Obj>"#);
        for i in 1..40 {
            doc.push_str(&format!(
                r#"<Obj N="l{i}" RefId="l{i}"><LST><Ref RefId="l{p}"/><Ref RefId="l{p}"/></LST></Obj>"#,
                p = i - 1
            ));
        }
        doc.push_str("</Props></Obj></Objs>");
        let e = read(&doc).unwrap_err();
        assert!(e.to_string().contains("expand to more than"), "{e}");
        // A few references are fine.
        let ok = r#"<Objs><Obj><Props><Obj N="a" RefId="1"><LST><S>x</S></LST></Obj><Ref N="b" RefId="1"/></Props></Obj></Objs>"#;
        assert_eq!(read(ok).unwrap()[0].fields.len(), 2);
    }

    #[test]
    fn string_escapes_round_trip() {
        for s in [
            "plain",
            "a_b",
            "_x0041_",
            "line\nbreak\ttab",
            "emoji \u{1F600}",
            "<&>\"",
        ] {
            assert_eq!(decode_string(&decode_xml(&encode_string(s))), s, "{s}");
        }
        assert_eq!(encode_string("_x0041_"), "_x005F_x0041_");
        assert_eq!(encode_string("\u{1F600}"), "_xD83D__xDE00_");
    }

    /// The five predefined entities, as the XML parser would resolve them.
    fn decode_xml(s: &str) -> String {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
    }
}
